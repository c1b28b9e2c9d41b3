"""``lmforge data preview CONFIG.yaml [key=value ...] [--rows N] [--html FILE]``: the training examples as
training builds them, trained tokens told apart from context, what the context cuts, padding and packing."""

from __future__ import annotations

import os
import sys

from lmforge.cli.args import config_arguments
from lmforge.core.config import load_config
from lmforge.data.preview import preview_data, render_text, write_html


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    preview = sub.add_parser(
        "preview",
        help="show the first examples with their trained tokens marked",
        description="The first examples of the first training source, built exactly as "
        "training builds them, and the numbers of the whole training data.",
    )
    config_arguments(preview)
    preview.add_argument("--rows", type=int, default=3, help="examples to show (default 3)")
    preview.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    result = preview_data(cfg, rows=args.rows)
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(render_text(result, colour=colour))
    if args.html:
        print(f"wrote {write_html(result, args.html)}")
    return 0
