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
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def matmul_peaks(repeats: int = 3, seconds: float = 0.5, cpu_time: bool = False) -> dict:
    """Best fp32 and bf16 dense matmul FLOP/s over a few tries and sizes: the MFU denominators.

    ``cpu_time``: FLOPs per CPU-second of this process (per core with OMP_NUM_THREADS=1), steadier than
    the wall clock on a machine shared with other work.
    """
    clock = time.process_time if cpu_time else time.perf_counter
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = 0.0
        for n in (1024, 2048):
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            a @ b  # warm-up
            for _ in range(repeats):
                reps, t0 = 0, clock()
                while clock() - t0 < seconds:
                    a @ b
                    reps += 1
                best = max(best, 2 * n**3 * reps / (clock() - t0))
        peaks[name] = best
    return peaks


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def timed_pretrain(overrides: list[str], config: str | None = None, command: str = "pretrain") -> dict:
    """Runs ``lmforge pretrain`` (or ``command``: finetune) in a fresh process; returns the run's summary row and
    last evaluation.

    A process per run: accelerate's state (mixed precision) is fixed once per process, and each run
    then pays its own start-up like a user's would.
    """
    import subprocess
    import sys
    import tempfile

    from lmforge.core.config import load_config

    with tempfile.TemporaryDirectory(prefix="lmforge-bench-") as tmp:
        if config is None:  # the command wants a file; the overrides say everything
            config = Path(tmp) / "run.yaml"
            config.write_text("name: run\n", encoding="utf-8")
        run_dir = load_config(config, overrides).run_dir
        t0 = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "lmforge.cli", command, str(config), *overrides],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        raise SystemExit(f"lmforge {command} failed:\n{proc.stderr[-3000:]}")
    rows = read_metrics(run_dir)
    summary = next(r for r in reversed(rows) if "run_tokens_per_s" in r)
    evals = [r for r in rows if "val_loss" in r]
    return {
        "run_dir": str(run_dir),
        "total_s": time.time() - t0,
        **summary,
        "last_eval": evals[-1] if evals else {},
        "first_loss": next((r["loss"] for r in rows if "loss" in r), None),
    }


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


def bare_steps(
    preset: str,
    batch: int,
    *,
    bf16: bool = False,
    compile_mode: str = "",
    attn: str = "sdpa",
    fused_adamw: bool = False,
    steps: int = 15,
    vocab: int = 128,
    cpu_time: bool = False,
) -> dict:
    """Median seconds of a bare training step (forward, loss, backward, clip, AdamW) on random tokens.

    ``cpu_time`` times with the process's CPU clock: on a machine shared with other work it ranks
    options more steadily than the wall clock (run it with one thread, OMP_NUM_THREADS=1).
    """
    import torch.nn.functional as F

    from lmforge.core.config import ModelConfig
    from lmforge.model import build_model, flops_per_token

    # only the ids and the vocabulary size of a tokenizer are read when building a model
    tok = type("Tok", (), {"__len__": lambda self: vocab, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})()
    model = build_model(ModelConfig(preset=preset, attn_implementation=attn), tok)
    T = model.config.max_position_embeddings
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, **({"fused": True} if fused_adamw else {"foreach": True}))
    fwd = torch.compile(model, mode=compile_mode) if compile_mode else model
    clock = time.process_time if cpu_time else time.perf_counter

    def step():
        x = torch.randint(0, vocab, (batch, T))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = fwd(input_ids=x).logits  # (B, T, V)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    for _ in range(5 if compile_mode else 3):  # warm-up (and compilation)
        step()
    warmup = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = clock()
        step()
        times.append(clock() - t)
    times.sort()
    med = times[len(times) // 2]
    fpt = flops_per_token(model, T)
    return {
        "preset": preset,
        "batch": batch,
        "context": T,
        "bf16": bf16,
        "compile": compile_mode or "off",
        "attn": attn,
        "fused_adamw": fused_adamw,
        "clock": "cpu" if cpu_time else "wall",
        "warmup_s": warmup,
        "step_s": med,
        "step_s_min": times[0],
        "step_s_max": times[-1],
        "tokens_per_s": batch * T / med,
        "flops_per_s": fpt * batch * T / med,
    }
