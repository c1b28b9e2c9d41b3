"""``lmforge resume runs/NAME [key=value ...]``."""

from __future__ import annotations

from lmforge.train.run import resume


def add_arguments(p) -> None:
    p.add_argument("run", help="a run folder, e.g. runs/poet")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=2000")


def run(args) -> int:
    out = resume(args.run, args.overrides)
    print(f"run folder: {out}")
    return 0
