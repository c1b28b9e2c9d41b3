"""Values a run chooses itself: ``train.batch_size: auto`` (the largest micro-batch that fits, accumulation
making up the global batch), ``train.lr: auto`` (a learning-rate range test) and ``train.max_steps: auto``
(the steps ``train.max_time_s`` holds at the measured step time). Decided once after the plan, before the
first stage; the resolved config is saved with the run, so a resume reuses the choice.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lmforge.core.config import RunConfig
from lmforge.core.errors import LmforgeError
from lmforge.core.registry import OBJECTIVES
from lmforge.train.derived import OPTIMIZER_BYTES, TRANSIENT, process_memory

MARGIN = 0.2
"""Share of the memory limit left free: the allocator's slack, evaluation, what the probe does not see."""
DEFAULT_GLOBAL = 16
"""Sequences per optimizer step with ``batch_size: auto`` and no ``global_batch_size``: the default batch."""


# ---- batch_size: auto --------------------------------------------------------------------------------------


def memory_limit(device, limit_gb: float | None) -> int:
    """Bytes the process may hold: ``train.memory_limit_gb``, else what the device has free plus what the
    process already holds (CUDA: free device memory; CPU: the kernel's MemAvailable)."""
    if limit_gb:
        return int(limit_gb * 2**30)
    if str(device).startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_allocated(device)
    with open("/proc/meminfo") as f:
        avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    return avail + process_memory(device)


def saved_bytes(model, micro_batch: int, context: int, device, autocast) -> int:
    """Bytes autograd saves for backward in one real forward pass of ``micro_batch`` random rows (each storage
    counted once); on CUDA also the measured peak of the forward and backward."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(0, vocab, (micro_batch, context), device=device)
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast():
        loss = model(input_ids=ids, labels=ids).loss
    if cuda:
        loss.backward()
        model.zero_grad(set_to_none=True)
        return max(sum(seen.values()), torch.cuda.max_memory_allocated(device) - start)
    del loss
    return sum(seen.values())


def step_bytes(model, micro_batch: int, context: int, optimizer: str, device, autocast, in_use: int) -> int:
    """What the process will hold at the peak of a training step with this micro-batch: what it held before
    probing (``in_use``, weights included), gradients and optimizer state of the trainable weights, and the
    activations (saved bytes times the measured transient factor, on CPU)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    act = saved_bytes(model, micro_batch, context, device, autocast)
    act = act if str(device).startswith("cuda") else int(TRANSIENT * act)
    return in_use + trainable * (4 + OPTIMIZER_BYTES[optimizer]) + act


def fit_micro_batch(need: Callable[[int], int], per_process: int, limit: int, margin: float = MARGIN) -> tuple:
    """The largest divisor of ``per_process`` whose ``need(b)`` stays under ``limit * (1 - margin)``, trying
    divisors from 1 up and stopping at the first that does not fit; returns (b, {b: need})."""
    allowed, needs, best = limit * (1 - margin), {}, None
    for b in [d for d in range(1, per_process + 1) if per_process % d == 0]:
        try:
            needs[b] = need(b)
        except torch.OutOfMemoryError:
            needs[b] = math.inf
        if needs[b] > allowed:
            break
        best = b
    if best is None:
        raise LmforgeError(
            f"train.batch_size=auto: one sequence needs {needs[1] / 2**30:.2f} GiB, more than {1 - margin:.0%} of "
            f"the {limit / 2**30:.2f} GiB limit; set train.gradient_checkpointing, a smaller model.context or "
            "train.memory_limit_gb"
        )
    return best, needs


def resolve_batch_size(cfg: RunConfig, model, context: int, accelerator) -> dict:
    """The micro-batch that fits and the accumulation that keeps the global batch; set on ``cfg``."""
    tc, world = cfg.train, accelerator.num_processes
    target = tc.global_batch_size or DEFAULT_GLOBAL * tc.grad_accum * world
    if target % world:
        raise LmforgeError(f"train.global_batch_size={target} does not divide among {world} processes")
    limit = memory_limit(accelerator.device, tc.memory_limit_gb)
    model.to(accelerator.device)
    was_training = model.training
    model.train()
    # measured once: the probes' own freed memory would otherwise count against the larger micro-batches
    in_use = process_memory(accelerator.device)
    # probed at 1 and 2 rows, extrapolated (activations grow linearly with the rows): a probe at a size that
    # does not fit would itself take the memory the limit forbids
    one, two = (
        step_bytes(model, b, context, tc.optimizer, accelerator.device, accelerator.autocast, in_use) for b in (1, 2)
    )
    need = lambda b: one + (two - one) * (b - 1)
    micro, needs = fit_micro_batch(need, target // world, limit)
    model.train(was_training)
    tc.batch_size, tc.grad_accum = micro, target // world // micro
    return {"batch_size": micro, "grad_accum": tc.grad_accum, "global": target, "limit": limit, "needs": needs}


def fit_line(fit: dict) -> str:
    """What ``batch_size: auto`` chose, in one line."""
    need = fit["needs"][fit["batch_size"]] / 2**30
    return (
        f"batch_size: auto -> {fit['batch_size']} x grad_accum {fit['grad_accum']} (global {fit['global']}); "
        f"{need:.2f} GiB of the {fit['limit'] / 2**30:.2f} GiB limit, {MARGIN:.0%} kept free"
    )


# ---- lr: auto ----------------------------------------------------------------------------------------------


def range_lrs(start: float, end: float, steps: int) -> list[float]:
    """Rates growing geometrically from ``start`` to ``end`` over ``steps`` steps."""
    return [start * (end / start) ** (i / (steps - 1)) for i in range(steps)]


def smooth(losses: list[float], beta: float = 0.8) -> list[float]:
    """Bias-corrected exponential moving average (as fastai's range test smooths its curve)."""
    out, avg = [], 0.0
    for i, x in enumerate(losses):
        avg = beta * avg + (1 - beta) * x
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def steepest(lrs: list[float], smoothed: list[float], diverge: float = 4.0) -> float:
    """The rate where the smoothed loss falls fastest per unit of log-rate, before it diverges (first point
    above ``diverge`` times its minimum)."""
    lowest, stop = smoothed[0], len(smoothed)
    for i, s in enumerate(smoothed):
        if not math.isfinite(s) or s > diverge * lowest:
            stop = i
            break
        lowest = min(lowest, s)
    if stop < 3:
        raise LmforgeError("train.lr=auto: the loss diverged at once in the range test; check the data")
    slopes = [
        (smoothed[i + 1] - smoothed[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in range(1, stop - 1)
    ]
    return lrs[1 + min(range(len(slopes)), key=slopes.__getitem__)]


def trial_steps(cfg: RunConfig, model, tokenizer, data, accelerator, reference, lrs: list[float], diverge=None):
    """Optimizer steps at the rates ``lrs`` (stopping early when a loss passes ``diverge`` times the lowest),
    then the weights and torch's RNG put back as they were: (losses, seconds of each step)."""
    from lmforge.train.loop import make_optimizer

    tc = cfg.train
    objective = OBJECTIVES.get(tc.objective).bind(tc.objective_args, tokenizer)
    model.to(accelerator.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in trainable]
    rng = torch.get_rng_state()
    optimizer = make_optimizer(model, tc.model_copy(update={"lr": lrs[0]}))
    losses, seconds = [], []
    model.train()
    for step, lr in enumerate(lrs):
        start = time.perf_counter()
        for g in optimizer.param_groups:
            g["lr"] = lr
        total = 0.0
        for mb in data.train_step(step):
            mb = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in mb.items()}
            with accelerator.autocast():
                loss, _ = objective(model, mb, reference)
            loss.backward()
            total += loss.detach().float().item()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trainable, tc.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total)
        seconds.append(time.perf_counter() - start)
        if diverge and (not math.isfinite(total) or total > diverge * min(losses)):
            break
    with torch.no_grad():
        for p, s in zip(trainable, saved):
            p.copy_(s)
    torch.set_rng_state(rng)
    return losses, seconds


def range_test(cfg: RunConfig, model, tokenizer, data, accelerator, reference=None, steps: int = 60) -> dict:
    """Trains up to ``steps`` optimizer steps with the rate growing from 1e-6 to 1 (stopping once the loss
    diverges), puts the weights back; returns the curve and the chosen rate."""
    lrs = range_lrs(1e-6, 1.0, steps)
    losses, _ = trial_steps(cfg, model, tokenizer, data, accelerator, reference, lrs, diverge=4.0)
    curve = smooth([x if math.isfinite(x) else 1e9 for x in losses])
    return {"lrs": lrs[: len(losses)], "losses": losses, "smoothed": curve, "lr": steepest(lrs, curve)}


def steps_in_budget(cfg: RunConfig, model, tokenizer, data, accelerator, reference=None, probe: int = 6) -> dict:
    """``train.max_steps: auto``: the budget (``max_time_s``) over the median time of a few real steps (the
    first, paying for warm-up, left out); the weights are put back."""
    tc = cfg.train
    if not tc.max_time_s:
        raise LmforgeError("train.max_steps=auto needs train.max_time_s, the budget the steps are fitted to")
    lr = tc.lr if tc.lr != "auto" else 1e-6
    _, seconds = trial_steps(cfg, model, tokenizer, data, accelerator, reference, [lr] * probe)
    per_step = statistics.median(seconds[1:])
    return {"max_steps": max(1, int(tc.max_time_s / per_step)), "step_s": per_step}


def save_range_test(result: dict, run_dir: Path) -> Path:
    """``lr_range.json`` and ``lr_range.png`` (loss against rate, the choice marked) in the run folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "lr_range.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(result["lrs"], result["losses"], alpha=0.4, label="loss")
    ax.plot(result["lrs"], result["smoothed"], label="smoothed")
    ax.axvline(result["lr"], color="k", linestyle="--", label=f"chosen {result['lr']:.2g}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="learning-rate range test")
    ax.legend()
    fig.tight_layout()
    path = run_dir / "lr_range.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def resolve_auto(cfg: RunConfig, plan, accelerator, say: Callable[[str], None] = print) -> bool:
    """Replaces ``auto`` in ``train.batch_size``, ``train.lr`` and ``train.max_steps`` (the run's and each
    stage's), in that order; True when there was any."""
    stages = [cfg, *[s for s in plan.stages if s is not cfg]]
    if "auto" not in (cfg.train.batch_size, cfg.train.lr, cfg.train.max_steps):
        return False
    if cfg.train.batch_size == "auto":
        fit = _same_everywhere(accelerator, resolve_batch_size(cfg, plan.model, plan.context, accelerator))
        for s in stages:
            s.train.batch_size, s.train.grad_accum = fit["batch_size"], fit["grad_accum"]
        say(fit_line(fit))
    if cfg.train.lr == "auto":
        result = range_test(cfg, plan.model, plan.tokenizer, plan.data(cfg), accelerator, plan.reference)
        result = _same_everywhere(accelerator, result)
        for s in stages:
            if s.train.lr == "auto":
                s.train.lr = result["lr"]
        png = save_range_test(result, cfg.run_dir) if accelerator.is_main_process else None
        say(
            f"lr: auto -> {result['lr']:.3g} (range test: {len(result['losses'])} steps from 1e-06 up, the "
            f"steepest fall of the smoothed loss; {png})"
        )
    if cfg.train.max_steps == "auto":
        fit = steps_in_budget(cfg, plan.model, plan.tokenizer, plan.data(cfg), accelerator, plan.reference)
        fit = _same_everywhere(accelerator, fit)
        for s in stages:
            if s.train.max_steps == "auto":
                s.train.max_steps = fit["max_steps"]
        say(
            f"max_steps: auto -> {fit['max_steps']} ({cfg.train.max_time_s:.0f} s at {fit['step_s']:.3f} s a step, "
            "measured; the schedule still follows the clock)"
        )
    return True


def _same_everywhere(accelerator, value):
    """The main process's value on every process."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]
