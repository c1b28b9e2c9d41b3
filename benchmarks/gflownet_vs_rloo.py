"""GFlowNet against RLOO at equal reward: which one's samples are more diverse when both rhyme as often?

Two RL runs on the same poet keep checkpoints along the way (``train.save_every``); every checkpoint of both
is measured as ``benchmarks/rl_poet.py`` measures a model (samples at temperature 0.8 from the recipe's
prompts, the first quatrain's complete lines: the share of AABB pairs that rhyme, how many rhyme sounds the
line ends use and the commonest one's share, distinct-2, self-BLEU-2, known words, the base model's
perplexity), and each checkpoint of the first run is set beside the checkpoint of the second whose rhyme rate
is nearest. Rows whose rates differ by more than ``--tolerance`` are not
compared. Prints the table and writes ``benchmarks/out/gflownet_vs_rloo.json``.

  python benchmarks/gflownet_vs_rloo.py --base runs/demo/model --recipe recipes/rl-poet-en.yaml \
      --runs tb=runs/rl-poet-en-gflownet rloo=runs/rl-poet-en,runs/rl-poet-en-fine --eval-tokens 96 --samples 120
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json  # noqa: E402
from rl_poet import measure  # noqa: E402

from lmforge.core.config import load_config  # noqa: E402
from lmforge.rewards.lexicon import lexicon  # noqa: E402

KEYS = ["rhyme_rate", "rhyme_sounds", "top_sound_share", "distinct_2", "self_bleu_2", "known_words", "base_perplexity"]


def checkpoints(runs: list[Path]) -> list[tuple[int, Path]]:
    """(step, model dir) of the saved checkpoints of one run, in step order; several folders are one run's
    pieces (e.g. a copy resumed from step 700 that saved every 10 steps), the first holding a step wins."""
    out: dict[int, Path] = {}
    for run in runs:
        for d in (run / "checkpoints").glob("step-*"):
            if (d / "model").is_dir():
                out.setdefault(int(d.name.split("-")[1]), d / "model")
    return sorted(out.items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--recipe", required=True, help="the recipe whose prompts are sampled")
    ap.add_argument(
        "--runs", nargs=2, required=True, metavar="NAME=RUN_DIR[,RUN_DIR]", help="first: GFlowNet, second: RLOO"
    )
    ap.add_argument("--lang", default="en")
    ap.add_argument("--samples", type=int, default=120)
    ap.add_argument("--eval-tokens", type=int, default=None)
    ap.add_argument("--tolerance", type=float, default=0.05, help="largest rhyme-rate gap of a compared pair")
    ap.add_argument("--lexicon", default=None)
    ap.add_argument("--out", default="gflownet_vs_rloo")
    args = ap.parse_args()
    cfg = load_config(args.recipe, [f"model.base={args.base}"])
    prompts = [p.replace("\\n", "\n") for p in cfg.rl.prompts]
    max_new = args.eval_tokens or cfg.rl.max_new_tokens
    french = Path(__file__).resolve().parents[2] / "shared" / "data" / "french_poetry.txt"
    known = lexicon(args.lexicon or ("demo" if args.lang == "en" else str(french)))
    t0 = time.time()
    base = measure(Path(args.base), Path(args.base), prompts, args.samples, max_new, args.lang, "AABB", known)
    table: dict[str, list[dict]] = {}
    for spec in args.runs:
        name, run = spec.split("=", 1)
        table[name] = []
        for step, model in checkpoints([Path(r) for r in run.split(",")]):
            m = measure(model, Path(args.base), prompts, args.samples, max_new, args.lang, "AABB", known)
            table[name].append({"step": step, **m})
            print(f"{name:<6} step {step:>5}  " + "  ".join(f"{k} {m[k]:.3f}" for k in KEYS), flush=True)
    (a, rows_a), (b, rows_b) = table.items()
    pairs = []
    for ra in rows_a:
        rb = min(rows_b, key=lambda r: abs(r["rhyme_rate"] - ra["rhyme_rate"]))
        if abs(rb["rhyme_rate"] - ra["rhyme_rate"]) <= args.tolerance:
            pairs.append({a: {k: ra[k] for k in ["step", *KEYS]}, b: {k: rb[k] for k in ["step", *KEYS]}})
    print("\nbase: " + "  ".join(f"{k} {base[k]:.3f}" for k in KEYS))
    print(f"\n{'pair':<5}{'run':<7}{'step':>6}" + "".join(f"{k:>17}" for k in KEYS))
    for i, p in enumerate(pairs):
        for name in (a, b):
            r = p[name]
            print(f"{i:<5}{name:<7}{r['step']:>6}" + "".join(f"{r[k]:>17.3f}" for k in KEYS))
    more_diverse = sum(
        p[a]["distinct_2"] > p[b]["distinct_2"] and p[a]["self_bleu_2"] < p[b]["self_bleu_2"] for p in pairs
    )
    print(f"\n{a} more diverse on both measures in {more_diverse} of {len(pairs)} pairs at equal rhyme", end="")
    print(f" (within {args.tolerance})")
    out = {
        "command": " ".join(sys.argv),
        "base": base,
        "runs": table,
        "pairs": pairs,
        "more_diverse_pairs": more_diverse,
        "seconds": time.time() - t0,
        "machine": machine(),
    }
    print(f"wrote {write_json(f'{args.out}.json', out)}")


if __name__ == "__main__":
    main()
