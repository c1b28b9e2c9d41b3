"""``lmforge generate MODEL --prompt ... | --file rows.jsonl --template '...' [--output out.jsonl]``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from lmforge.core.errors import LmforgeError
from lmforge.data.readers import loads, read_records, read_text
from lmforge.doctor import check, raise_on_errors
from lmforge.generate import GenerationSettings, generate
from lmforge.generate.precision import CHOICES, COMPILE_HELP, DTYPE_HELP
from lmforge.generate.prompting import chat, fill_template, run_format, wrap
from lmforge.model import load_model_and_tokenizer


def add_arguments(p):
    p.add_argument("model", help="a model folder, an lmforge run (runs/NAME), or a hub id")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeat for several); '\\n' is a newline")
    p.add_argument("--file", help="JSONL/JSON/CSV rows to render through --template (one generation per row)")
    p.add_argument("--template", default="{prompt}", help="prompt template with {column} placeholders")
    p.add_argument("--output", help="write results as JSONL here (default: print)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.8, help="0 means greedy")
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategy", default="sample", choices=["sample", "greedy", "least_likely"])
    p.add_argument("--any-token", action="store_true", help="least_likely: allow special/control/byte tokens")
    p.add_argument("--json", action="store_true", help="constrain the output to valid JSON")
    p.add_argument("--schema", help="constrain the output to this JSON schema (a .json file)")
    p.add_argument("--stop", action="append", default=[], help="cut the output at this string (repeatable)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument(
        "--raw",
        action="store_true",
        help="send prompts as typed (default: wrapped in the run's training format, e.g. Alpaca's)",
    )
    fmt.add_argument("--chat", action="store_true", help="send each prompt as a user turn of the chat template")
    p.add_argument("--device", default="auto", help="auto (CUDA where present), cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="auto", choices=CHOICES, help=DTYPE_HELP)
    p.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    p.add_argument("--trust-remote-code", action="store_true")


def _rows(args) -> tuple[list[str], list[dict]]:
    if args.file:
        records = read_records(args.file)
        return fill_template(args.template, records), [r.row for r in records]
    if not args.prompt:
        raise LmforgeError("give --prompt TEXT (repeatable) or --file rows.jsonl")
    prompts = [p.replace("\\n", "\n") for p in args.prompt]
    return prompts, [{"prompt": p} for p in prompts]


def _schema(args):
    if args.schema:
        path = Path(args.schema)
        if not path.is_file():
            raise LmforgeError(f"schema file not found: {path}")
        return loads(read_text(path), str(path))
    return "any" if args.json else None


def run(args) -> int:
    prompts, rows = _rows(args)
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        strategy=args.strategy,
        well_formed=not args.any_token,
        json_schema=_schema(args),
        stop=tuple(args.stop),
        dtype=args.dtype,
        compile=args.compile,
    )
    model, tokenizer = load_model_and_tokenizer(
        args.model, trust_remote_code=args.trust_remote_code, device=args.device
    )
    prompts = _formatted(args, prompts, tokenizer)
    _doctor(model, tokenizer, settings, prompts)
    outs = generate(model, tokenizer, prompts, settings)
    if args.output:
        lines = [
            json.dumps({**row, "prompt": prompt, "completion": text}, ensure_ascii=False, default=str) + "\n"
            for row, prompt, text in zip(rows, prompts, outs)
        ]
        _write_atomically(Path(args.output), "".join(lines))
        print(f"wrote {len(outs)} completions to {args.output}")
    else:
        for prompt, text in zip(prompts, outs):
            sys.stdout.write(f"{prompt}{text}\n" + ("-" * 40 + "\n" if len(outs) > 1 else ""))
    return 0


def _formatted(args, prompts: list[str], tokenizer) -> list[str]:
    """--chat: the chat template; --raw or a custom --template: as given; else the run's training format."""
    if args.chat:
        return [chat(p, tokenizer) for p in prompts]
    data = None if args.raw or args.template != "{prompt}" else run_format(args.model)
    if data is None:
        return prompts
    print(f"prompts wrapped in the run's training format ({data.format}); --raw sends them as typed", file=sys.stderr)
    return [wrap(p, data, tokenizer) for p in prompts]


def _doctor(model, tokenizer, settings, prompts) -> None:
    """The doctor's generation checks run first and refuse errors with the same messages."""
    gen = {
        "max_new_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "do_sample": settings.temperature > 0 and settings.strategy != "greedy",
    }
    raise_on_errors(check(model=model, tokenizer=tokenizer, generation=gen, prompts=prompts, purpose="generate"))


def _write_atomically(path: Path, text: str) -> None:
    """All of ``text`` at ``path`` or, if writing fails, the file as it was: never half the completions."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
