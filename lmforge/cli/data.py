"""``lmforge data preview CONFIG.yaml [key=value ...] [--rows N] [--html FILE]``: the training examples as
training builds them, trained tokens told apart from context, what the context cuts, padding and packing.
``train.batch_size: auto`` is decided first, as a run decides it (the model loaded, memory probed)."""

from __future__ import annotations

import os
import sys

from lmforge.cli.args import config_arguments
from lmforge.core.config import load_config
from lmforge.data.preview import preview_data, render_text, write_html
from lmforge.train.auto import fit_line
from lmforge.train.batch_choice import choose_batch_size


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
    chosen = choose_batch_size(cfg) if cfg.train.batch_size == "auto" else None  # as the run will choose it
    result = preview_data(cfg, rows=args.rows)
    if chosen:
        result.notes.append(f"{fit_line(chosen)} (chosen as training chooses it, with the memory free now)")
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(render_text(result, colour=colour))
    if args.html:
        print(f"wrote {write_html(result, args.html)}")
    return 0
