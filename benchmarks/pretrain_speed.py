"""Pretraining speed: tokens/s and model FLOP/s (MFU) of full `lmforge pretrain` runs on this machine.

Each cell is a whole run (data, logging, evaluation, samples and checkpoints included) stopped by a
wall-clock budget; throughput is every trained token over the loop's wall-clock, not the best step.
The fp32 and bf16 matmul peaks are measured in the same process as the MFU denominators.

    python benchmarks/pretrain_speed.py                      # 1m and 10m, fp32/bf16, compile off/on
    python benchmarks/pretrain_speed.py --presets 1m --precisions bf16 --compile on --seconds 60
    OMP_NUM_THREADS=1 python benchmarks/pretrain_speed.py --bare   # options A/B on a bare step, CPU clock
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import bare_steps, machine, matmul_peaks, print_table, shared_data, timed_pretrain, write_json  # noqa: E402

# Per preset: the batch that fills the cores (context comes from the preset: 64 for 1m, 256 for 10m).
BATCH = {"tiny": 32, "1m": 64, "3m": 32, "10m": 16, "40m": 8}

# nanoGPT's CPU configuration (0.8M parameters, context 64, batch 12), measured on this machine.
NANOGPT_CPU_FLOPS = 62e9


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["1m", "10m"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--compile", nargs="+", default=["off", "on"], choices=["off", "on"])
    p.add_argument("--seconds", type=float, default=60.0, help="wall-clock budget of each run")
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default: per preset)")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--data", default=None, help="corpus (default: ../shared/data/tinyshakespeare.txt)")
    p.add_argument(
        "--bare",
        action="store_true",
        help="rank speed options (bf16, compile, attention, fused AdamW) on a bare step, by CPU time",
    )
    p.add_argument("--out", default=None, help="file name under benchmarks/out/")
    return p.parse_args(argv)


# The options ranked by --bare, each against the default step (fp32, eager, sdpa, foreach AdamW).
BARE_OPTIONS = [
    {},
    {"bf16": True},
    {"compile_mode": "default"},
    {"bf16": True, "compile_mode": "default"},
    {"compile_mode": "max-autotune-no-cudagraphs"},
    {"attn": "eager"},
    {"fused_adamw": True},
]


def bare(args) -> int:
    """Bare training steps per option, timed by the CPU clock (steadier than the wall clock under load)."""
    rows = []
    for preset in args.presets:
        for opt in BARE_OPTIONS:
            r = bare_steps(preset, args.batch or BATCH[preset], cpu_time=True, **opt)
            r["gflops"] = r["flops_per_s"] / 1e9
            rows.append(r)
            print(
                f"  {preset} {opt or 'default'}: {r['step_s'] * 1e3:.0f} ms/step, {r['gflops']:.1f} GFLOP/s "
                f"(warm-up {r['warmup_s']:.0f} s)",
                flush=True,
            )
    print_table(
        rows,
        [
            ("preset", "preset", ""),
            ("batch", "batch", "d"),
            ("bf16", "bf16", ""),
            ("compile", "compile", ""),
            ("attn", "attn", ""),
            ("fused_adamw", "fused", ""),
            ("step_s", "s/step", ".3f"),
            ("step_s_min", "min", ".3f"),
            ("step_s_max", "max", ".3f"),
            ("gflops", "GFLOP/s", ".1f"),
            ("warmup_s", "warm-up s", ".0f"),
        ],
    )
    path = write_json(args.out or "pretrain_bare.json", {"machine": machine(), "rows": rows})
    print(f"\nwrote {path}")
    return 0


def run_cell(preset: str, precision: str, compiled: bool, args, work: Path, tokenizer: str | None) -> dict:
    """One full pretraining run under a time budget; its throughput and FLOP/s."""
    from lmforge.model import flops_per_token, load_pretrained

    name = f"{preset}-{precision}-{'compile' if compiled else 'eager'}"
    batch = args.batch or BATCH[preset]
    over = [
        f"name={name}",
        f"out_dir={work / 'runs'}",
        f"log_dir={work / 'logs'}",
        f"data.train={args.data}",
        "data.val_fraction=0.1",
        "tokenizer.vocab_size=128",
        f"model.preset={preset}",
        f"train.batch_size={batch}",
        f"train.precision={precision}",
        f"train.compile={str(compiled).lower()}",
        "train.max_steps=1000000",
        f"train.max_time_s={args.seconds}",
        "train.warmup_steps=20",
        f"train.eval_every={args.eval_every}",
        "train.eval_batches=8",
        "train.log_every=10",
        "train.save_every=1000000",
        "sample.every=1000",
        "sample.max_new_tokens=64",
    ]
    if tokenizer:
        over.append(f"tokenizer.path={tokenizer}")
    r = timed_pretrain(over)
    model = load_pretrained(Path(r["run_dir"]) / "model")
    context = model.config.max_position_embeddings
    fpt = flops_per_token(model, context)
    return {
        "preset": preset,
        "precision": precision,
        "compile": "on" if compiled else "off",
        "batch": batch,
        "context": context,
        "params": sum(p.numel() for p in model.parameters()),
        "flops_per_token": fpt,
        "steps": r["run_steps"],
        "run_time_s": r["run_time_s"],
        "tokens_per_s": r["run_tokens_per_s"],
        "run_cpu_s": r["run_cpu_s"],
        "tokens_per_cpu_s": r["run_tokens"] / max(r["run_cpu_s"], 1e-9),
        "flops_per_s": r["run_tokens_per_s"] * fpt,
        "val_loss": r["last_eval"].get("val_loss"),
        "run_dir": r["run_dir"],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.bare:
        return bare(args)
    args.data = args.data or str(shared_data("tinyshakespeare.txt"))
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, load {info['load_average']}")
    peaks, cpu_peaks = matmul_peaks(), matmul_peaks(cpu_time=True)
    print(
        f"matmul peaks: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; "
        "per CPU-second: "
        f"fp32 {cpu_peaks['fp32'] / 1e9:.0f}, bf16 {cpu_peaks['bf16'] / 1e9:.0f}"
    )
    rows, tokenizer = [], None
    with tempfile.TemporaryDirectory(prefix="lmforge-speed-") as tmp:
        for preset in args.presets:
            for precision in args.precisions:
                for c in args.compile:
                    t0 = time.time()
                    row = run_cell(preset, precision, c == "on", args, Path(tmp), tokenizer)
                    tokenizer = tokenizer or str(Path(row["run_dir"]) / "tokenizer")  # train it once
                    row["gflops"] = row["flops_per_s"] / 1e9
                    row["mfu_fp32"] = row["flops_per_s"] / peaks["fp32"]
                    row["mfu_bf16"] = row["flops_per_s"] / peaks["bf16"]
                    row["mfu"] = row["flops_per_s"] / peaks[precision]
                    row["vs_nanogpt"] = row["flops_per_s"] / NANOGPT_CPU_FLOPS
                    # the same run by the CPU clock: what the code achieves whatever else the machine runs
                    row["gflops_per_cpu_s"] = row["tokens_per_cpu_s"] * row["flops_per_token"] / 1e9
                    row["mfu_cpu"] = row["gflops_per_cpu_s"] * 1e9 / cpu_peaks[precision]
                    row["wall_s"] = time.time() - t0
                    rows.append(row)
                    print(
                        f"  {preset} {precision} compile={c}: {row['tokens_per_s']:,.0f} tok/s, "
                        f"{row['gflops']:.1f} GFLOP/s, MFU {row['mfu']:.0%} ({row['steps']} steps)",
                        flush=True,
                    )
    print()
    print_table(
        rows,
        [
            ("preset", "preset", ""),
            ("precision", "precision", ""),
            ("compile", "compile", ""),
            ("batch", "batch", "d"),
            ("context", "ctx", "d"),
            ("steps", "steps", "d"),
            ("tokens_per_s", "tok/s", ",.0f"),
            ("gflops", "GFLOP/s", ".1f"),
            ("mfu", "MFU(own)", ".1%"),
            ("mfu_bf16", "MFU(bf16)", ".1%"),
            ("vs_nanogpt", "x nanoGPT", ".2f"),
            ("gflops_per_cpu_s", "GFLOP/CPU-s", ".1f"),
            ("mfu_cpu", "MFU(CPU clock)", ".1%"),
            ("val_loss", "val loss", ".3f"),
        ],
    )
    for r in rows:
        r.pop("run_dir")
    payload = {
        "machine": info,
        "peaks": peaks,
        "peaks_per_cpu_s": cpu_peaks,
        "seconds": args.seconds,
        "rows": rows,
        "load_average_after": machine()["load_average"],
    }
    path = write_json(args.out or "pretrain_speed.json", payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
