"""`lmforge demo` side by side: the cosine on steps (the demo before the time budget drove its rate) against
schedules that follow the clock (the demo now: warmup, stable, decay over the last 30% of the budget), each
arm a real `python -m lmforge.cli demo` in an empty folder, one after the other in one run, same seed, same
210 s budget.

    python benchmarks/demo_schedule.py                       # all arms
    python benchmarks/demo_schedule.py --arms steps time-wsd # before and as shipped
    python benchmarks/demo_schedule.py --steps 1350          # fixed steps: the shapes alone, load-proof

Every arm evaluates on the same validation batches (``--eval-batches`` of the demo's held-out tenth, more
than the demo's own 4 so that the comparison is not noise); the table gives the final validation nats/char,
the best one, the steps the budget held and the wall time. Writes benchmarks/out/demo_schedule.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import OUT, ROOT, machine

# each arm spelled out in full, whatever the demo ships: "steps" is the demo before its rate followed the clock
ARMS = {
    "steps": ["train.lr_scheduler=cosine", "train.lr_follows_time=false"],  # cut wherever the 210 s end
    "time": ["train.lr_scheduler=cosine"],  # cosine to the floor at the budget's end
    "time-wsd": ["train.lr_scheduler=wsd", "train.decay_ratio=0.3"],  # the demo as shipped
    "time-lr3e-3": ["train.lr_scheduler=cosine", "train.lr=3e-3"],
    "time-wsd-lr3e-3": ["train.lr_scheduler=wsd", "train.decay_ratio=0.3", "train.lr=3e-3"],
    "time-lr4e-3": ["train.lr_scheduler=cosine", "train.lr=4e-3"],
    "time-lr3e-3-floor0": ["train.lr_scheduler=cosine", "train.lr=3e-3", "train.min_lr_ratio=0.0"],
    "time-wsd-lr4e-3": ["train.lr_scheduler=wsd", "train.decay_ratio=0.3", "train.lr=4e-3"],
}


def run_arm(name: str, overrides: list[str], eval_batches: int, steps: int | None = None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"demo-{name}-"))
    cmd = [sys.executable, "-m", "lmforge.cli", "demo", f"train.eval_batches={eval_batches}", *overrides]
    if steps:  # quality at a fixed step count, whatever the machine's load: the schedule's shape, not its timing
        cmd += ["train.max_time_s=null", f"train.max_steps={steps}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"arm {name} failed:\n{out.stderr[-2000:]}")
    rows = [json.loads(x) for x in (folder / "runs" / "demo" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_nats_per_char" in r]
    steps = max(r.get("step", 0) for r in rows)
    return {
        "arm": name,
        "overrides": overrides,
        "steps": steps,
        "final_val_nats_per_char": evals[-1]["val_nats_per_char"],
        "best_val_nats_per_char": min(r["val_nats_per_char"] for r in evals),
        "wall_s": round(wall, 1),
        "folder": str(folder),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--eval-batches", type=int, default=24)
    ap.add_argument("--steps", type=int, help="fixed steps instead of the 210 s budget (a load-proof proxy)")
    args = ap.parse_args()
    before = machine()
    results = []
    for name in args.arms:
        results.append(run_arm(name, ARMS[name], args.eval_batches, args.steps))
        r = results[-1]
        print(
            f"{name:>16}  steps {r['steps']:5d}  final {r['final_val_nats_per_char']:.4f}  "
            f"best {r['best_val_nats_per_char']:.4f}  wall {r['wall_s']:.0f} s",
            flush=True,
        )
    print("\n| arm | overrides | steps in 210 s | final val nats/char | best | wall |\n|---|---|---:|---:|---:|---:|")
    for r in results:
        over = " ".join(r["overrides"]) or "(as shipped)"
        print(
            f"| {r['arm']} | `{over}` | {r['steps']} | {r['final_val_nats_per_char']:.4f} | "
            f"{r['best_val_nats_per_char']:.4f} | {r['wall_s']:.0f} s |"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    report = {
        "machine_before": before,
        "machine_after": machine(),
        "eval_batches": args.eval_batches,
        "steps": args.steps,
        "arms": results,
    }
    (OUT / ("demo_schedule.json" if not args.steps else f"demo_schedule_{args.steps}steps.json")).write_text(
        json.dumps(report, indent=2)
    )


if __name__ == "__main__":
    main()
