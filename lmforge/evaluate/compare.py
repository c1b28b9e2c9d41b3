"""Models x (text files, a task) -> one comparison table: ``compare(EvalRequest(...))``, as ``lmforge eval``
runs it. Language-model metrics come from ``lm``, task metrics from ``lmforge.scoring``, the least-likely
study rows from ``unlikeliness``; ``report`` writes the table."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import lmforge.rewards  # noqa: F401  (registers the verse metrics: rhyme_rate_en, distinct_2, ...)
from lmforge.core.errors import LmforgeError
from lmforge.evaluate.lm import score_file
from lmforge.evaluate.remote import RemoteModel, byte_budget, is_remote
from lmforge.evaluate.report import write_report
from lmforge.evaluate.unlikeliness import COLUMNS, baselines, model_argmax, unlikeliness_table
from lmforge.model import load_model_and_tokenizer, resolve_device
from lmforge.scoring import answer_budget, generate_completions
from lmforge.scoring.tasks import load_task


@dataclass
class EvalRequest:
    """What ``lmforge eval`` was asked: the field names are its options'."""

    models: list[str]
    text: list[str] = field(default_factory=list)
    max_chars: Optional[int] = None
    context: Optional[int] = None
    stride: Optional[int] = None
    task: Optional[str] = None
    data: Optional[str] = None
    split: str = "all"
    limit: Optional[int] = None
    constrained: str = "auto"
    max_new_tokens: Optional[int] = None
    batch_size: int = 8
    unlikeliness: Optional[str] = None
    window: int = 64
    tail: float = 1.0
    out: str = "eval"
    device: str = "auto"


def _load(name: str, device: str):
    return load_model_and_tokenizer(name, device=device)


def _modes(args, task) -> list[bool]:
    choice = args.constrained
    if choice == "auto":
        choice = "both" if task.schema is not None else "off"
    return {"on": [True], "off": [False], "both": [False, True]}[choice]


def _eval_task(model, tokenizer, task, args, label, table, samples) -> None:
    """``model`` a local model, or a ``RemoteModel`` (then ``tokenizer`` is None)."""
    remote = isinstance(model, RemoteModel)
    if args.max_new_tokens:
        budget = args.max_new_tokens
    elif remote:  # its tokenizer is not here: a bound in bytes holds for any byte-level one
        budget = byte_budget([task.reference(r) for r in task.rows])
    else:
        budget = answer_budget(tokenizer, task, task.rows)
    prompts = [task.prompt(r) for r in task.rows]
    for constrained in _modes(args, task):
        row = f"{label} +json" if constrained else label
        t0 = time.perf_counter()
        if remote:
            schema = (task.schema if task.schema is not None else "any") if constrained else None
            comps = model.complete(prompts, budget, schema)
        else:
            comps = generate_completions(
                model,
                tokenizer,
                prompts,
                max_new_tokens=budget,
                batch_size=args.batch_size,
                constrained=constrained,
                schema=task.schema,
            )
        table.setdefault(row, {}).update(task.evaluate(comps, task.rows))
        print(f"  {row}: {len(prompts)} examples in {time.perf_counter() - t0:.1f}s", flush=True)
        samples += [
            {"model": row, "prompt": p, "completion": c, "reference": task.reference(r)}
            for p, c, r in zip(prompts, comps, task.rows)
        ]


def _eval_unlikeliness(args, device, table) -> None:
    """One row per predictor: the baselines, then each model's own argmax (a least-likely model's pick)."""
    reference, tokenizer = _load(args.unlikeliness, device)
    V = reference.get_output_embeddings().weight.size(0)
    texts = []
    for f in args.text:
        text = Path(f).read_text(encoding="utf-8")
        texts.append(text[int(len(text) * (1 - args.tail)) :][: args.max_chars])
    cands = baselines(tokenizer, V)
    for name in dict.fromkeys(args.models):
        cands[name] = model_argmax(_load(name, device)[0])
    for row in unlikeliness_table(reference, cands, tokenizer, texts, args.window, batch_size=args.batch_size):
        table.setdefault(row["name"], {}).update({k: row[k] for k in COLUMNS})


def compare(args: EvalRequest) -> tuple[dict, dict]:
    """Evaluates every model; writes eval.md/json/csv (and completions.jsonl); returns (table, paths)."""
    if not args.text and not args.task:
        raise LmforgeError("nothing to evaluate: give --text FILE and/or --task NAME")
    if args.unlikeliness and not args.text:
        raise LmforgeError("--unlikeliness needs --text FILE (held-out text to measure on)")
    if args.unlikeliness and any(is_remote(m) for m in args.models):
        raise LmforgeError("--unlikeliness needs each model's logits; a remote model (openai:...) has none here")
    for f in args.text:
        if not Path(f).is_file():
            raise LmforgeError(f"text file not found: {f}")
    task = load_task(args.task, args.data, args.split) if args.task else None
    if task is not None and args.limit:
        task.rows = task.rows[: args.limit]
    device = resolve_device(args.device)
    table: dict[str, dict[str, float]] = {}
    samples: list[dict] = []
    if args.unlikeliness:
        _eval_unlikeliness(args, device, table)
    for name in dict.fromkeys(args.models) if not args.unlikeliness else []:  # a model named twice is evaluated once
        print(f"{name}:", flush=True)
        if is_remote(name):
            if args.text:
                print("  no text metrics for a remote model (its API gives no log-probabilities of given text)")
            if task is not None:
                _eval_task(RemoteModel(name, workers=args.batch_size), None, task, args, name, table, samples)
            continue
        model, tokenizer = _load(name, device)
        for f in args.text:
            s = score_file(
                model,
                tokenizer,
                f,
                max_chars=args.max_chars,
                context=args.context,
                stride=args.stride,
                batch_size=args.batch_size,
            )
            table.setdefault(name, {}).update(
                {f"{k}:{Path(f).name}": s[k] for k in ("perplexity", "bits_per_char", "bits_per_byte")}
            )
        if task is not None:
            _eval_task(model, tokenizer, task, args, name, table, samples)
    meta = {
        "task": task.name if task else None,
        "split": args.split,
        "examples": len(task.rows) if task else 0,
        "text": args.text,
        "max_chars": args.max_chars,
        "device": device,
    }
    paths = write_report(table, args.out, meta=meta)
    if samples:
        with open(Path(args.out) / "completions.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(s, ensure_ascii=False) + "\n" for s in samples)
    return table, paths
