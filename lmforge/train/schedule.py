"""The learning-rate schedule: transformers' linear warmup then cosine decay to ``min_lr_ratio``.

The lr at optimizer step s (0-based) is ``lr * factor(s)``: ``s / warmup`` during warmup (0 at the first
step, as in transformers' ``Trainer``), then ``min + (1 - min) * (1 + cos(pi * p)) / 2`` with
``p = (s - warmup) / (max_steps - warmup)``; the loop never steps past ``max_steps``.
"""

from __future__ import annotations

import torch


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, max_steps: int, min_lr_ratio: float):
    """A ``LambdaLR`` stepped once per optimizer step (outside accelerate: see ``loop.train``)."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(optimizer, num_warmup_steps=warmup_steps,
                                                       num_training_steps=max_steps, min_lr_rate=min_lr_ratio)
