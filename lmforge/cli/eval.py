"""``lmforge eval MODEL... [--text FILE] [--task NAME]``: one comparison table (Markdown, JSON, CSV).

lmforge eval runs/poet runs/poet-lora --text ../shared/data/tinyshakespeare.txt --max-chars 20000
lmforge eval runs/cantos --task examples/cantos/task.yaml --split test     # constrained and free decoding
lmforge eval MODEL --task my_task.yaml --constrained off --out reports/
lmforge eval runs/unlikely --unlikeliness runs/base --text held_out.txt   # least-likely study table
lmforge eval runs/cantos openai:cantos@http://127.0.0.1:8000/v1 --task examples/cantos/task.yaml  # vs a served model
"""

from __future__ import annotations

import argparse

from lmforge.evaluate.compare import EvalRequest, compare
from lmforge.evaluate.report import to_markdown


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "models",
        nargs="+",
        help="model folders, lmforge runs (runs/NAME), hub ids, or served models openai:MODEL@BASE_URL "
        "(key from OPENAI_API_KEY; tasks only)",
    )
    g = p.add_argument_group("language-model metrics")
    g.add_argument(
        "--text",
        nargs="*",
        default=[],
        metavar="FILE",
        help="text files: perplexity, bits per character, bits per byte",
    )
    g.add_argument("--max-chars", type=int, default=None, help="score only the first N characters of each file")
    g.add_argument("--context", type=int, default=None, help="sliding window length (default: the model's)")
    g.add_argument("--stride", type=int, default=None, help="sliding window step (default: context/2)")
    t = p.add_argument_group("generation metrics")
    t.add_argument("--task", default=None, help="a registered task (cantos), a task YAML or package.module:function")
    t.add_argument("--data", default=None, help="the task's examples (JSONL) instead of its default file")
    t.add_argument(
        "--split",
        default="all",
        choices=["all", "train", "test"],
        help="deterministic held-out split (test: a fixed 20%%)",
    )
    t.add_argument("--limit", type=int, default=None, help="evaluate the first N examples only")
    t.add_argument(
        "--constrained",
        default="auto",
        choices=["auto", "on", "off", "both"],
        help="JSON-constrained decoding; auto: both ways when the task has a schema",
    )
    t.add_argument(
        "--max-new-tokens", type=int, default=None, help="generation budget (default: longest reference in tokens + 16)"
    )
    t.add_argument("--batch-size", type=int, default=8)
    u = p.add_argument_group("least-likely measurements")
    u.add_argument(
        "--unlikeliness",
        metavar="REFERENCE",
        default=None,
        help="measure the models' predictions against this reference model on the --text files "
        "(normalized reference rank, argmin hits, surprisal, diversity, well-formed), "
        "beside the reference's argmax, negated logits and random baselines",
    )
    u.add_argument("--window", type=int, default=64, help="tokens per window for --unlikeliness")
    u.add_argument(
        "--tail",
        type=float,
        default=1.0,
        metavar="FRACTION",
        help="--unlikeliness: measure on the last FRACTION of each text (0.1: what a 90/10 split held out)",
    )
    p.add_argument("--out", default="eval", help="folder for eval.md, eval.json, eval.csv, completions.jsonl")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")


def run(args) -> int:
    table, paths = compare(EvalRequest(**vars(args)))
    print()
    print(to_markdown(table), end="")
    print(f"\nwrote {paths['md']}, {paths['json']}, {paths['csv']}")
    return 0
