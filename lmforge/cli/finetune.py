"""``lmforge finetune CONFIG.yaml [key=value ...]``."""

from __future__ import annotations

from lmforge.cli.args import run_arguments, run_training
from lmforge.train.run import finetune

add_arguments = run_arguments


def run(args) -> int:
    return run_training(args, finetune)
