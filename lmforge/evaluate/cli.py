"""``lmforge eval``: models x (text files, a task) -> one comparison table (Markdown, JSON, CSV).

    lmforge eval runs/poet runs/poet-lora --text ../shared/data/tinyshakespeare.txt --max-chars 20000
    lmforge eval runs/cantos --task cantos --split test            # constrained and free decoding
    lmforge eval MODEL --task my_task.yaml --constrained off --out reports/
    lmforge eval runs/unlikely --unlikeliness runs/base --text held_out.txt   # least-likely study table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import LmforgeError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", help="model folders, lmforge runs (runs/NAME) or hub ids")
    g = p.add_argument_group("language-model metrics")
    g.add_argument("--text", nargs="*", default=[], metavar="FILE",
                   help="text files: perplexity, bits per character, bits per byte")
    g.add_argument("--max-chars", type=int, default=None, help="score only the first N characters of each file")
    g.add_argument("--context", type=int, default=None, help="sliding window length (default: the model's)")
    g.add_argument("--stride", type=int, default=None, help="sliding window step (default: context/2)")
    t = p.add_argument_group("generation metrics")
    t.add_argument("--task", default=None, help="a registered task (cantos), a task YAML or package.module:function")
    t.add_argument("--data", default=None, help="the task's examples (JSONL) instead of its default file")
    t.add_argument("--split", default="all", choices=["all", "train", "test"],
                   help="deterministic held-out split (test: a fixed 20%%)")
    t.add_argument("--limit", type=int, default=None, help="evaluate the first N examples only")
    t.add_argument("--constrained", default="auto", choices=["auto", "on", "off", "both"],
                   help="JSON-constrained decoding; auto: both ways when the task has a schema")
    t.add_argument("--max-new-tokens", type=int, default=None,
                   help="generation budget (default: longest reference in tokens + 16)")
    t.add_argument("--batch-size", type=int, default=8)
    u = p.add_argument_group("least-likely measurements")
    u.add_argument("--unlikeliness", metavar="REFERENCE", default=None,
                   help="measure the models' predictions against this reference model on the --text files "
                        "(normalized reference rank, argmin hits, surprisal, diversity, well-formed), "
                        "beside the reference's argmax, negated logits and random baselines")
    u.add_argument("--window", type=int, default=64, help="tokens per window for --unlikeliness")
    u.add_argument("--tail", type=float, default=1.0, metavar="FRACTION",
                   help="--unlikeliness: measure on the last FRACTION of each text (0.1: what a 90/10 split held out)")
    p.add_argument("--out", default="eval", help="folder for eval.md, eval.json, eval.csv, completions.jsonl")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")


def _device(name: str):
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _load(name: str, device: str):
    from ..model import load_pretrained, resolve_model_path
    from ..tokenizer import load_tokenizer

    path = resolve_model_path(name)
    local = name.startswith((".", "/", "~")) or name.count("/") != 1 or Path(name).parent.is_dir()  # runs/typo
    if not Path(path).exists() and local:
        raise LmforgeError(f"model not found: {name} (no such folder, and not a hub id owner/name)")
    tokenizer = load_tokenizer(path)
    model = load_pretrained(name).to(device).eval()
    return model, tokenizer


def _modes(args, task) -> list[bool]:
    choice = args.constrained
    if choice == "auto":
        choice = "both" if task.schema is not None else "off"
    return {"on": [True], "off": [False], "both": [False, True]}[choice]


def _eval_task(model, tokenizer, task, args, label, table, samples) -> None:
    from . import answer_budget, generate_completions

    budget = args.max_new_tokens or answer_budget(tokenizer, task, task.rows)
    prompts = [task.prompt(r) for r in task.rows]
    for constrained in _modes(args, task):
        row = f"{label} +json" if constrained else label
        t0 = time.perf_counter()
        comps = generate_completions(model, tokenizer, prompts, max_new_tokens=budget, batch_size=args.batch_size,
                                     constrained=constrained, schema=task.schema)
        table.setdefault(row, {}).update(task.evaluate(comps, task.rows))
        print(f"  {row}: {len(prompts)} examples in {time.perf_counter() - t0:.1f}s", flush=True)
        samples += [{"model": row, "prompt": p, "completion": c, "reference": task.reference(r)}
                    for p, c, r in zip(prompts, comps, task.rows)]


def _eval_unlikeliness(args, device, table) -> None:
    """One row per predictor: the baselines, then each model's own argmax (a least-likely model's pick)."""
    from .unlikeliness import COLUMNS, baselines, model_argmax, unlikeliness_table

    reference, tokenizer = _load(args.unlikeliness, device)
    V = reference.get_output_embeddings().weight.size(0)
    texts = []
    for f in args.text:
        text = Path(f).read_text(encoding="utf-8")
        texts.append(text[int(len(text) * (1 - args.tail)):][: args.max_chars])
    cands = baselines(tokenizer, V)
    for name in dict.fromkeys(args.models):
        cands[name] = model_argmax(_load(name, device)[0])
    for row in unlikeliness_table(reference, cands, tokenizer, texts, args.window, batch_size=args.batch_size):
        table.setdefault(row["name"], {}).update({k: row[k] for k in COLUMNS})


def run(args: argparse.Namespace) -> int:
    from .lm import score_file
    from .report import to_markdown, write_report
    from .tasks import load_task

    if not args.text and not args.task:
        raise LmforgeError("nothing to evaluate: give --text FILE and/or --task NAME")
    if args.unlikeliness and not args.text:
        raise LmforgeError("--unlikeliness needs --text FILE (held-out text to measure on)")
    for f in args.text:
        if not Path(f).is_file():
            raise LmforgeError(f"text file not found: {f}")
    task = load_task(args.task, args.data, args.split) if args.task else None
    if task is not None and args.limit:
        task.rows = task.rows[: args.limit]
    device = _device(args.device)
    table: dict[str, dict[str, float]] = {}
    samples: list[dict] = []
    if args.unlikeliness:
        _eval_unlikeliness(args, device, table)
    for name in dict.fromkeys(args.models) if not args.unlikeliness else []:  # a model named twice is evaluated once
        print(f"{name}:", flush=True)
        model, tokenizer = _load(name, device)
        for f in args.text:
            s = score_file(model, tokenizer, f, max_chars=args.max_chars, context=args.context, stride=args.stride,
                           batch_size=args.batch_size)
            table.setdefault(name, {}).update({f"{k}:{Path(f).name}": s[k]
                                               for k in ("perplexity", "bits_per_char", "bits_per_byte")})
        if task is not None:
            _eval_task(model, tokenizer, task, args, name, table, samples)
    meta = {"task": task.name if task else None, "split": args.split, "examples": len(task.rows) if task else 0,
            "text": args.text, "max_chars": args.max_chars, "device": device}
    paths = write_report(table, args.out, meta=meta)
    if samples:
        with open(Path(args.out) / "completions.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    print()
    print(to_markdown(table), end="")
    print(f"\nwrote {paths['md']}, {paths['json']}, {paths['csv']}")
    return 0
