"""``lmforge rl CONFIG.yaml [key=value ...]``: training with rewards (RLOO, GRPO, GFlowNet TB/SubTB, DPO)."""

from __future__ import annotations

from lmforge.cli.args import run_arguments, run_training
from lmforge.train.run import rl

add_arguments = run_arguments


def run(args) -> int:
    return run_training(args, rl)
