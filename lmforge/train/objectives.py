"""Objectives: ``(model, batch, reference) -> (loss, metrics)``, registered by name.

``batch`` holds ``input_ids`` (B, T), ``attention_mask`` (B, T), ``labels`` (B, T) with -100 where no
loss is taken, and ``num_tokens``: the count of target tokens in the *whole optimizer step* (every
micro-batch on every process). Dividing a micro-batch's summed loss by it makes accumulation exact:
batch 1 x accumulation 8 gives the same gradient as batch 8 x accumulation 1.
``reference(batch)`` returns the frozen reference model's logits (B, T, V) under no_grad, or is None.
The math lives in pure functions of tensors so tests can check it by hand.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import OBJECTIVES

IGNORE = -100


def shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Position t predicts token t+1: logits (B, T-1, V) against labels (B, T-1)."""
    return logits[:, :-1, :], labels[:, 1:]


def token_nll_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token negative log-likelihood over unmasked positions (labels unshifted)."""
    lg, lb = shift(logits, labels)
    return F.cross_entropy(lg.reshape(-1, lg.size(-1)).float(), lb.reshape(-1), ignore_index=IGNORE, reduction="sum")


def forward_logits(model, batch) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits


@OBJECTIVES.register("causal_lm", needs_reference=False, higher_is_better=False)
def causal_lm(model, batch, reference=None):
    """Plain next-token cross-entropy."""
    logits = forward_logits(model, batch)
    nll = token_nll_sum(logits, batch["labels"])
    return nll / batch["num_tokens"], {"nll_sum": nll.detach()}


# Objectives defined elsewhere register themselves on import.
from . import least_likely  # noqa: E402,F401
