"""CLI wrappers: ``lmforge pretrain|finetune|resume|validate CONFIG.yaml [key=value ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import load_config
from ..errors import LmforgeError


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 model.preset=10m")


def add_pretrain_arguments(p):
    _config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")


def run_pretrain(args) -> int:
    from .pretrain import pretrain

    cfg = load_config(args.config, args.overrides)
    out = pretrain(cfg, resume=args.resume)
    print(f"run folder: {out}  (model: {out / 'model'}; TensorBoard: tensorboard --logdir {cfg.log_dir})")
    return 0


def add_finetune_arguments(p):
    add_pretrain_arguments(p)


def run_finetune(args) -> int:
    from .finetune import finetune

    cfg = load_config(args.config, args.overrides)
    out = finetune(cfg, resume=args.resume)
    print(f"run folder: {out}  (model: {out / 'model'}, best: {out / 'best'})")
    return 0


def add_resume_arguments(p):
    p.add_argument("run", help="a run folder, e.g. runs/poet")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=2000")


def run_resume(args) -> int:
    cfg_path = Path(args.run) / "config.yaml"
    if not cfg_path.is_file():
        raise LmforgeError(f"{args.run}: not a run folder (no config.yaml)")
    cfg = load_config(cfg_path, args.overrides)
    if cfg.model.base:
        from .finetune import finetune

        finetune(cfg, resume=True)
    else:
        from .pretrain import pretrain

        pretrain(cfg, resume=True)
    return 0


def add_validate_arguments(p):
    _config_args(p)


def run_validate(args) -> int:
    import yaml

    cfg = load_config(args.config, args.overrides)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# {args.config}: valid")
    return 0
