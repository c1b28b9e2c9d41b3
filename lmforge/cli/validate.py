"""``lmforge validate CONFIG.yaml [key=value ...]``: the resolved config, or one line saying what is wrong.

The config is checked as the command that would run it reads it: ``rl`` when ``rl.algorithm`` is set,
``finetune`` when ``model.base`` is, else ``pretrain`` (a key that command would ignore is an error here too)."""

from __future__ import annotations

import yaml

from lmforge.cli.args import config_arguments
from lmforge.core.config import load_config, reject_unused


def add_arguments(p) -> None:
    config_arguments(p)


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    reject_unused(cfg, "rl" if cfg.rl.algorithm else "finetune" if cfg.model.base else "pretrain")
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# {args.config}: valid")
    return 0
