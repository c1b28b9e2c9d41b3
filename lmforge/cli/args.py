"""Arguments more than one command takes."""

from __future__ import annotations

import argparse


def config_arguments(p: argparse.ArgumentParser) -> None:
    """``CONFIG.yaml [key=value ...]``, as pretrain, finetune and validate read a run's config."""
    p.add_argument("config", help="YAML config (see recipes/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=3e-4 model.preset=10m")


def trust_remote_code(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-remote-code", action="store_true", help="run code shipped with a hub model")
