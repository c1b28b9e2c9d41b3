"""``lmforge demo``: the whole path in a few minutes, offline, on the embedded public-domain verse."""

from __future__ import annotations

from lmforge.train.demo import demo


def add_arguments(p):
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_time_s=60 out_dir=/tmp/runs")
    p.add_argument("--prompt", default="The ", help="the opening of every poem")


def run(args) -> int:
    demo(args.overrides, args.prompt)
    return 0
