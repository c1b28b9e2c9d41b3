"""Arguments more than one command takes, and the one way a training command runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from lmforge.core.config import load_config


def config_arguments(p: argparse.ArgumentParser) -> None:
    """``CONFIG.yaml [key=value ...]``, as pretrain, finetune and validate read a run's config."""
    p.add_argument("config", help="YAML config (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 model.preset=10m")


def run_arguments(p: argparse.ArgumentParser) -> None:
    """A training run's arguments: its config, overrides, and ``--resume``."""
    config_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")


def run_training(args, stage: Callable) -> int:
    """Reads the config and overrides, runs ``stage`` (pretrain or finetune), says where the run is."""
    cfg = load_config(args.config, args.overrides)
    out = stage(cfg, resume=args.resume)
    print(
        f"run folder: {out}  (model: {out / 'model'}, best: {out / 'best'}; "
        f"TensorBoard: tensorboard --logdir {cfg.log_dir})"
    )
    return 0
