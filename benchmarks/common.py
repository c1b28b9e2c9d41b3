"""Shared by the benchmarks: reference data, machine load, matmul peaks, one timed `lmforge pretrain` run."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out"


def shared_data(name: str) -> Path:
    """A reference file from ../shared/data; exits with a clear reason where the folder is absent."""
    p = SHARED / name
    if not p.is_file():
        raise SystemExit(f"reference data {p} is absent (it lives in ../shared/data beside the checkout)")
    return p


def machine() -> dict:
    """What the figures were measured on, and how busy the machine was (other work skews timings)."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()], "date": time.strftime("%Y-%m-%d %H:%M")}


def matmul_peaks(repeats: int = 3, seconds: float = 0.5) -> dict:
    """Best fp32 and bf16 dense matmul FLOP/s over a few tries and sizes: the MFU denominators."""
    from lmforge.train.derived import matmul_peak_flops

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peaks[name] = max(matmul_peak_flops("cpu", dtype, n=n, seconds=seconds)
                          for n in (1024, 2048) for _ in range(repeats))
    return peaks


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def timed_pretrain(overrides: list[str], config: str | None = None) -> dict:
    """Runs ``lmforge pretrain`` in this process; returns the run's summary row and last evaluation."""
    from lmforge.config import load_config
    from lmforge.train.pretrain import pretrain

    cfg = load_config(config, overrides)
    t0 = time.time()
    run_dir = pretrain(cfg, quiet=True)
    rows = read_metrics(run_dir)
    summary = next(r for r in reversed(rows) if "run_tokens_per_s" in r)
    evals = [r for r in rows if "val_loss" in r]
    return {"run_dir": str(run_dir), "total_s": time.time() - t0, **summary,
            "last_eval": evals[-1] if evals else {}, "first_loss": next((r["loss"] for r in rows if "loss" in r), None)}


def write_json(name: str, payload: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return path


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """``columns``: (key, header, format spec) triples."""
    cell = lambda r, k, f: format(r[k], f) if isinstance(r.get(k), (int, float)) else str(r.get(k, ""))
    widths = [max(len(h), *(len(cell(r, k, f)) for r in rows)) for k, h, f in columns]
    print("  ".join(h.rjust(w) for (_, h, _), w in zip(columns, widths)))
    for r in rows:
        print("  ".join(cell(r, k, f).rjust(w) for (k, _, f), w in zip(columns, widths)))
