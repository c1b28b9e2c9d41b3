"""Tiny Shakespeare in a fixed wall-clock budget: validation loss in nats per character.

First 90% of ../shared/data/tinyshakespeare.txt trains, the last 10% validates. The score is the
loop's ``val_nats_per_char`` (validation NLL per token / characters per token) at the end of the
budget, so tokenizers of different vocabularies compare fairly.

    python benchmarks/shakespeare.py                               # recipes/shakespeare-cpu.yaml, 180 s
    python benchmarks/shakespeare.py train.lr=3e-3 model.context=256   # any override of the recipe
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, machine, print_table, shared_data, timed_pretrain, write_json  # noqa: E402

# nanoGPT's CPU configuration on this machine (char-level, 0.8M parameters, context 64, batch 12).
NANOGPT = {"2000 iterations (113 s)": 1.89, "3 minutes": 1.74}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="dotted overrides of the recipe, e.g. train.lr=3e-3")
    p.add_argument("--config", default=str(ROOT / "recipes" / "shakespeare-cpu.yaml"))
    p.add_argument(
        "--seconds",
        type=float,
        default=180.0,
        help="the wall-clock budget (train.max_time_s); 0: none, train.max_steps alone ends the run",
    )
    p.add_argument("--repeats", type=int, default=1, help="runs of the same config (timings are noisy)")
    p.add_argument("--out", default="shakespeare.json", help="file name under benchmarks/out/")
    return p.parse_args(argv)


def one_run(args, work: Path, i: int) -> dict:
    data = shared_data("tinyshakespeare.txt")
    over = [
        f"name=shakespeare-{i}",
        f"out_dir={work / 'runs'}",
        f"log_dir={work / 'logs'}",
        f"data.train={data}",
        "data.val_fraction=0.1",
        f"train.max_time_s={args.seconds or 'null'}",
        *args.overrides,
    ]
    r = timed_pretrain(over, args.config)
    ev = r["last_eval"]
    return {
        "run": i,
        "steps": r["run_steps"],
        "run_time_s": r["run_time_s"],
        "run_cpu_s": r["run_cpu_s"],
        "tokens_per_s": r["run_tokens_per_s"],
        "tokens_per_cpu_s": r["run_tokens"] / max(r["run_cpu_s"], 1e-9),
        "val_loss": ev.get("val_nll"),
        "val_nats_per_char": ev.get("val_nats_per_char"),
        "val_bpc": ev.get("val_bpc"),
        "sample": _last_sample(Path(r["run_dir"])),
    }


def _last_sample(run_dir: Path) -> str:
    files = sorted((run_dir / "samples").glob("step-*.txt"))
    return files[-1].read_text(encoding="utf-8")[:300] if files else ""


def main(argv=None) -> int:
    args = parse_args(argv)
    info = machine()
    print(
        f"machine: {info['cores']} cores, torch {info['torch']}, load {info['load_average']}; "
        f"{args.config} {' '.join(args.overrides)}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmforge-shakespeare-") as tmp:
        for i in range(args.repeats):
            rows.append(one_run(args, Path(tmp), i))
            print(
                f"  run {i}: {rows[-1]['val_nats_per_char']:.4f} nats/char after {rows[-1]['steps']} steps", flush=True
            )
    print()
    print_table(
        rows,
        [
            ("run", "run", "d"),
            ("steps", "steps", "d"),
            ("run_time_s", "seconds", ".0f"),
            ("tokens_per_s", "tok/s", ",.0f"),
            ("run_cpu_s", "CPU s", ".0f"),
            ("tokens_per_cpu_s", "tok/CPU-s", ",.0f"),
            ("val_loss", "val nats/token", ".4f"),
            ("val_nats_per_char", "val nats/char", ".4f"),
            ("val_bpc", "val bits/char", ".4f"),
        ],
    )
    print("reference, nanoGPT's CPU configuration: " + ", ".join(f"{v} at {k}" for k, v in NANOGPT.items()))
    print(f"\nsample:\n{rows[-1]['sample']}")
    path = write_json(
        args.out,
        {
            "machine": info,
            "config": args.config,
            "overrides": args.overrides,
            "seconds": args.seconds,
            "rows": rows,
            "nanogpt": NANOGPT,
            "load_average_after": machine()["load_average"],
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
