"""Tokens per second with and without JSON-constrained decoding, on the same model and prompts.

    python benchmarks/constrained_speed.py                       # 3m preset, random weights, CPU
    python benchmarks/constrained_speed.py --model runs/cantos --batch-sizes 1 8

Greedy decoding (as ``lmforge eval`` does), with the prompt and JSON schema of examples/cantos/task.yaml.
Two comparisons per batch size:

- at equal length (the overhead of the constraint itself): the number of steps a constrained generation
  takes to close its JSON, then both modes timed over exactly that many steps with EOS stopping off
  (the same generate machinery; only the processor differs), seconds per step compared. The processor's
  budget is ``--max-new-tokens``, as in use; "at the budget's edge" gives it exactly those steps instead,
  so that the budget check (a closing-path search) runs at every step: the worst case, an answer that
  only just fits;
- as decoded: tokens/s of each mode with its own stopping, a token counted up to and including the
  row's EOS. Constrained answers close their JSON and stop early, so they pay the prompt's prefill over
  fewer tokens: this row mixes answer length into speed.

Prints a table and writes JSON to benchmarks/out/constrained_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine  # noqa: E402

from lmforge.generate.constrained import check_schema, json_logits_processor  # noqa: E402

# the Cantos task's prompt and schema, from its file (the task's data is not needed to time decoding)
TASK = Path(__file__).resolve().parents[1] / "examples" / "cantos" / "task.yaml"
_task = yaml.safe_load(TASK.read_text(encoding="utf-8"))
CANTOS_TEMPLATE, CANTOS_SCHEMA = _task["template"], check_schema(_task["schema"], f"{TASK}: key 'schema'")

TEXT = (
    '### Question: "What is the first line of Canto I?"\n ### Answer: {"references": [{"canto": 1, "lines": [1]}]}\n'
    '### Question: "the last five lines of canto 4"\n ### Answer: {"references": [{"canto": 4, "lines": '
    "[-5, -4, -3, -2, -1]}]}\nAnd then went down to the ship, set keel to breakers, forth on the godly sea.\n"
)
QUESTIONS = [
    "What is the first line of Canto I?",
    "the last lines of canto 81",
    "Pull down thy vanity",
    "lines 3 to 7 of canto 45",
    "no reference here",
    "canto 116, all of it",
    "the second canto",
    "the opening of canto 74",
]


def build(args):
    from lmforge.core.config import ModelConfig
    from lmforge.model import build_model, load_pretrained, load_tokenizer
    from lmforge.model.tokenizer import train_tokenizer

    if args.model:
        return load_pretrained(args.model).eval(), load_tokenizer(args.model)
    tok = train_tokenizer([TEXT * 50], vocab_size=args.vocab_size)
    return build_model(ModelConfig(preset=args.preset, context=512), tok, seed=0).eval(), tok


def counted(new: torch.Tensor, eos: int) -> int:
    """Generated tokens up to and including each row's first EOS. new: (B, T)."""
    total = 0
    for row in new.tolist():
        total += row.index(eos) + 1 if eos in row else len(row)
    return total


class Clocked:
    """Wraps a logits processor and adds up the time spent in it (robust to a busy machine, unlike totals)."""

    def __init__(self, proc):
        self.proc, self.seconds, self.calls = proc, 0.0, 0

    def __call__(self, input_ids, scores):
        t0 = time.perf_counter()
        out = self.proc(input_ids, scores)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


@torch.no_grad()
def timed(
    model, tok, prompts, budget, constrained, exact: bool = False, grammar_budget: int | None = None
) -> tuple[float, int, float, int]:
    """(seconds, tokens, seconds inside the JSON processor, decoding steps). ``exact``: decode exactly
    ``budget`` steps, no EOS stopping in either mode (the same generate machinery, only the processor differs).
    ``grammar_budget``: the budget the processor closes the JSON within (default ``budget``)."""
    from transformers import LogitsProcessorList

    enc = tok([tok.bos_token + p for p in prompts], return_tensors="pt", padding=True)
    proc = json_logits_processor(tok, CANTOS_SCHEMA, grammar_budget or budget, greedy=True) if constrained else None
    clock = Clocked(proc) if constrained else None
    t0 = time.perf_counter()
    out = model.generate(
        **enc,
        max_new_tokens=budget,
        do_sample=False,
        logits_processor=LogitsProcessorList([clock]) if clock else None,
        pad_token_id=tok.pad_token_id,
        eos_token_id=None if exact else tok.eos_token_id,
    )
    dt = time.perf_counter() - t0
    new = out[:, enc["input_ids"].shape[1] :]
    return dt, counted(new, tok.eos_token_id), clock.seconds if clock else 0.0, new.shape[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="a trained model folder (default: a random --preset model)")
    p.add_argument("--preset", default="3m")
    p.add_argument("--vocab-size", type=int, default=256)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = build(args)
    tok.padding_side = "left"
    rows, equal = [], []
    for bs in args.batch_sizes:
        prompts = [CANTOS_TEMPLATE.split("{output}")[0].format(input=q) for q in (QUESTIONS * bs)[:bs]]
        timed(model, tok, prompts, 16, False), timed(model, tok, prompts, 16, True)  # warm-up, grammar compile
        # equal length: constrained, then free for exactly as many steps, alternating
        per_step = {"free": [], "constrained": [], "edge": []}
        for _ in range(args.repeats):
            steps = timed(model, tok, prompts, args.max_new_tokens, True)[3]  # where the JSON ends
            for mode in ("constrained", "free", "edge"):
                dt = timed(
                    model,
                    tok,
                    prompts,
                    steps,
                    mode != "free",
                    exact=True,
                    grammar_budget=args.max_new_tokens if mode == "constrained" else steps,
                )[0]
                per_step[mode].append(dt / steps)
        ratios = [c / f for c, f in zip(per_step["constrained"], per_step["free"])]
        edge = [c / f for c, f in zip(per_step["edge"], per_step["free"])]
        equal.append(
            {
                "batch_size": bs,
                "free_ms_per_step": 1e3 * statistics.median(per_step["free"]),
                "constrained_ms_per_step": 1e3 * statistics.median(per_step["constrained"]),
                "slowdown": statistics.median(ratios) - 1,
                "runs_ratio": ratios,
                "edge_ms_per_step": 1e3 * statistics.median(per_step["edge"]),
                "slowdown_at_edge": statistics.median(edge) - 1,
                "runs_ratio_at_edge": edge,
            }
        )
        for constrained in (False, True):
            runs = [timed(model, tok, prompts, args.max_new_tokens, constrained) for _ in range(args.repeats)]
            rates = [n / dt for dt, n, _, _ in runs]
            # the processor's share of the time: the overhead constraints add, whatever else loads the machine
            overhead = statistics.median(p / (dt - p) for dt, _, p, _ in runs)
            per_step = statistics.median(1e3 * p / steps for _, _, p, steps in runs)
            rows.append(
                {
                    "batch_size": bs,
                    "constrained": constrained,
                    "tokens": runs[0][1],
                    "tokens_per_s": statistics.median(rates),
                    "runs_tokens_per_s": rates,
                    "processor_overhead": overhead,
                    "processor_ms_per_step": per_step,
                }
            )
    for r in rows:
        if r["constrained"]:
            free = next(x for x in rows if x["batch_size"] == r["batch_size"] and not x["constrained"])
            r["slowdown"] = free["tokens_per_s"] / r["tokens_per_s"] - 1
    print("at equal length (same decoding steps):")
    print(
        f"{'batch':>5} {'free ms/step':>13} {'constrained ms/step':>20} {'slower':>8} "
        f"{'at the budget edge':>19} {'slower':>8}"
    )
    for r in equal:
        print(
            f"{r['batch_size']:>5} {r['free_ms_per_step']:>13.2f} {r['constrained_ms_per_step']:>20.2f} "
            f"{100 * r['slowdown']:>+7.1f}% {r['edge_ms_per_step']:>19.2f} {100 * r['slowdown_at_edge']:>+7.1f}%"
        )
    print("as decoded (each mode stops on its own):")
    print(
        f"{'batch':>5} {'decoding':>12} {'tokens':>7} {'tokens/s':>10} {'slower':>8} {'processor':>10} {'ms/step':>8}"
    )
    for r in rows:
        slower = f"{100 * r['slowdown']:+.1f}%" if "slowdown" in r else ""
        proc = f"{100 * r['processor_overhead']:+.1f}%" if r["constrained"] else ""
        step = f"{r['processor_ms_per_step']:.2f}" if r["constrained"] else ""
        print(
            f"{r['batch_size']:>5} {'constrained' if r['constrained'] else 'free':>12} {r['tokens']:>7} "
            f"{r['tokens_per_s']:>10.1f} {slower:>8} {proc:>10} {step:>8}"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    doc = {
        "model": args.model or f"random {args.preset}",
        "max_new_tokens": args.max_new_tokens,
        "machine": machine(),
        "equal_length": equal,
        "rows": rows,
    }
    (OUT / "constrained_speed.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {OUT / 'constrained_speed.json'}")


if __name__ == "__main__":
    main()
