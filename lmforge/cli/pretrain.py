"""``lmforge pretrain CONFIG.yaml [key=value ...]``."""

from __future__ import annotations

from lmforge.cli.args import run_arguments, run_training
from lmforge.train.run import pretrain

add_arguments = run_arguments


def run(args) -> int:
    return run_training(args, pretrain)
