"""The learning-rate schedule: transformers' schedulers, stepped once per optimizer step, by steps or by time.

``train.lr_scheduler`` picks the shape after a linear warmup (0 at the first step, as in transformers'
``Trainer``): ``cosine`` to ``min_lr_ratio`` (the default), ``linear`` to ``min_lr_ratio``, ``constant``, or
``wsd`` (warmup, stable, then the last ``decay_ratio`` of the run decays to ``min_lr_ratio``). By steps the
rate at optimizer step s (0-based) is ``lr * f(s)`` with ``p = (s - warmup) / (max_steps - warmup)``.

With a time budget (``train.max_time_s``) the schedule follows the clock: the step the shape is read at is
``max(s, max_steps * elapsed / max_time_s)``, so the rate reaches its end value when the budget ends,
whatever the machine's speed (and still by ``max_steps`` on a machine fast enough to get there first).
Warmup stays counted in steps. ``train.lr_follows_time: false`` keeps the schedule on steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch

SCHEDULERS = ("cosine", "linear", "constant", "wsd")


def warmup_steps(tc) -> int:
    """``warmup_ratio`` of ``max_steps`` when set, else ``warmup_steps``."""
    return round(tc.warmup_ratio * tc.max_steps) if tc.warmup_ratio is not None else tc.warmup_steps


def make_scheduler(optimizer: torch.optim.Optimizer, tc, clock: Optional[Callable[[], float]] = None):
    """A ``LambdaLR`` for ``tc`` (a TrainConfig); ``clock()`` gives the run's elapsed training seconds and is
    read only when ``tc.max_time_s`` is set."""
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_with_min_lr_schedule_with_warmup,
        get_linear_schedule_with_warmup,
        get_wsd_schedule,
    )

    warmup, total, floor = warmup_steps(tc), tc.max_steps, tc.min_lr_ratio
    if tc.lr_scheduler == "cosine":
        sched = get_cosine_with_min_lr_schedule_with_warmup(optimizer, warmup, total, min_lr_rate=floor)
    elif tc.lr_scheduler == "linear":
        sched = get_linear_schedule_with_warmup(optimizer, warmup, total)
        sched.lr_lambdas = [_floored(f, warmup, floor) for f in sched.lr_lambdas]
    elif tc.lr_scheduler == "constant":
        sched = get_constant_schedule_with_warmup(optimizer, warmup)
    else:
        decay = max(1, round(tc.decay_ratio * (total - warmup)))
        sched = get_wsd_schedule(optimizer, warmup, decay, num_training_steps=total, min_lr_ratio=floor)
    if tc.max_time_s and tc.lr_follows_time and clock is not None:
        sched.lr_lambdas = [_by_time(f, warmup, total, tc.max_time_s, clock) for f in sched.lr_lambdas]
    return sched


def _floored(f: Callable[[float], float], warmup: int, floor: float) -> Callable[[float], float]:
    """After warmup, ``f`` rescaled from [0, 1] to [floor, 1]."""
    return lambda s: f(s) if s < warmup else floor + (1 - floor) * f(s)


def _by_time(f, warmup: int, total: int, budget_s: float, clock) -> Callable[[int], float]:
    def at(step: int) -> float:
        if step < warmup:
            return f(step)
        return f(min(float(total), max(float(step), total * clock() / budget_s)))

    return at
