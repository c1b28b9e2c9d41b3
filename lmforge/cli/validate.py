"""``lmforge validate CONFIG.yaml [key=value ...]``: the resolved config, or one line saying what is wrong."""

from __future__ import annotations

import yaml

from lmforge.cli.args import config_arguments
from lmforge.core.config import load_config

HELP = "check a config and print the resolved values"


def add_arguments(p) -> None:
    config_arguments(p)


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# {args.config}: valid")
    return 0
