"""``lmforge finetune CONFIG.yaml [key=value ...]``."""

from __future__ import annotations

from lmforge.cli.args import config_arguments
from lmforge.core.config import load_config
from lmforge.train.run import finetune

HELP = "fine-tune a pretrained model (full, LoRA, QLoRA): CONFIG.yaml [key=value ...]"


def add_arguments(p) -> None:
    config_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    out = finetune(cfg, resume=args.resume)
    print(f"run folder: {out}  (model: {out / 'model'}, best: {out / 'best'})")
    return 0
