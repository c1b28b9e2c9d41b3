"""Derived values printed once at start and saved with the run (nanochat-style)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from lmforge.model import count_params, flops_per_token


def matmul_peak_flops(
    device: torch.device | str = "cpu", dtype=torch.float32, n: int = 1024, seconds: float = 0.3
) -> float:
    """Measured dense matmul FLOP/s on this device and dtype: the physical limit used for MFU."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    sync()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def describe(
    model, context: int, tokens_per_step: int, max_steps: int, precision: str, device, max_time_s: float | None = None
) -> dict:
    """Parameter counts, FLOPs per token, tokens per step, and a run-time estimate at 40% of matmul peak."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak = matmul_peak_flops(device, dtype, seconds=0.2)
    fpt = flops_per_token(model, context)
    total_flops = fpt * tokens_per_step * max_steps
    return {
        "params": count_params(model),
        "trainable_params": count_params(model, trainable_only=True),
        "flops_per_token": fpt,
        "tokens_per_step": tokens_per_step,
        "max_steps": max_steps,
        "total_tokens": tokens_per_step * max_steps,
        "precision": precision,
        "attention": getattr(getattr(model, "config", None), "_attn_implementation", None),
        "matmul_peak_flops": peak,
        "estimated_time_s": total_flops / (0.4 * peak),
        "max_time_s": max_time_s,
    }


# Bytes of optimizer state per trainable parameter (fp32 master weights): AdamW keeps two fp32 moments,
# bitsandbytes' 8-bit AdamW two 8-bit ones (plus small block scales), SGD without momentum none.
OPTIMIZER_BYTES = {"adamw": 8, "adamw_8bit": 2, "paged_adamw_8bit": 2, "sgd": 0}


# Bytes saved for backward per token by one Llama decoder layer, fitted to torch's saved-tensor hooks over
# five shapes (transformers 5, sdpa): under bf16 autocast the norms and the residual stream stay fp32, so
# hidden-sized values cost more than half of fp32's. Eager attention adds its score matrices per head and
# key. A checkpointed layer keeps its fp32 input and the rotary tables. The loss keeps fp32 log-probs.
SAVED_PER_TOKEN = {"bf16": (36.5, 7.5, 6.0), "fp32": (42.9, 15.5, 4.0)}  # x hidden, x intermediate, x heads*ctx
CHECKPOINTED_PER_TOKEN = 6.5  # x hidden per layer
# Peak memory grows by more than what is saved: backward's gradients of the activations and the allocator's
# reuse pattern. Measured peak RSS over saved bytes on CPU: 1.8-3.4 over six shapes (benchmarks/memory.py).
TRANSIENT = 2.3


def process_memory(device) -> int:
    """Bytes the process holds now on the training device: CUDA's allocated memory, or the resident set."""
    if str(device).startswith("cuda"):
        return torch.cuda.memory_allocated(device)
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def memory_estimate(
    model, micro_batch: int, context: int, precision: str, optimizer: str, checkpointing: bool, in_use: int = 0
) -> dict:
    """Training memory in bytes, before the run: runtime, weights, gradients, optimizer state, activations, total.

    ``in_use`` is what the process already holds (libraries, data, the loaded weights); the part beyond the
    weights is reported as runtime. Activations are the bytes saved for backward by one micro-batch (tokens =
    micro_batch x context), from the per-layer coefficients above, times the measured transient factor.
    """
    cfg = getattr(model, "config", None)
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    weights = sum(p.numel() * p.element_size() for p in params)
    tokens = micro_batch * context
    h = getattr(cfg, "hidden_size", 0)
    layers = getattr(cfg, "num_hidden_layers", 0)
    ffn = getattr(cfg, "intermediate_size", 4 * h)
    heads = getattr(cfg, "num_attention_heads", 1)
    eager = getattr(cfg, "_attn_implementation", None) == "eager"
    per_h, per_f, per_score = SAVED_PER_TOKEN["bf16" if precision in ("bf16", "fp16") else "fp32"]
    layer = per_h * h + per_f * ffn + (per_score * heads * context if eager else 0)
    kept = layers * CHECKPOINTED_PER_TOKEN * h + layer if checkpointing else layers * layer
    logits = 4 * getattr(cfg, "vocab_size", 0)
    out = {
        "runtime": max(in_use - weights, 0),
        "weights": weights,
        "gradients": trainable * 4,
        "optimizer": trainable * OPTIMIZER_BYTES[optimizer],
        "activations": int(TRANSIENT * tokens * (kept + logits)),
    }
    out["total"] = sum(out.values())
    return out


def print_derived(d: dict, out: Path | None = None) -> None:
    est = d["estimated_time_s"]
    print(
        f"model: {d['params'] / 1e6:.2f}M parameters ({d['trainable_params'] / 1e6:.2f}M trainable), "
        f"{d['flops_per_token'] / 1e6:.1f} MFLOP/token (training)\n"
        f"schedule: {d['max_steps']} steps x {d['tokens_per_step']:,} tokens = {d['total_tokens'] / 1e6:.2f}M tokens; "
        f"precision {'fp32' if d['precision'] == 'no' else d['precision']}, attention {d.get('attention')}; "
        f"matmul peak {d['matmul_peak_flops'] / 1e9:.0f} GFLOP/s; "
        f"estimated {est / 60:.1f} min at 40% of peak"
        + (
            f" (stops at the time budget, {d['max_time_s'] / 60:.1f} min)"
            if d.get("max_time_s") and d["max_time_s"] < est
            else ""
        )
    )
    mem = d.get("memory")
    if mem:
        gib = lambda b: f"{b / 2**30:.2f}"  # noqa: E731
        print(
            f"memory (estimate): {gib(mem['total'])} GiB = runtime {gib(mem.get('runtime', 0))} + "
            f"weights {gib(mem['weights'])} + gradients "
            f"{gib(mem['gradients'])} + optimizer {gib(mem['optimizer'])} + activations {gib(mem['activations'])}"
        )
    if out is not None:
        out.write_text(json.dumps(d, indent=1), encoding="utf-8")
