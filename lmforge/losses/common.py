"""What every loss shares: the ignore label, the next-token shift, the summed next-token NLL.

Labels are *unshifted* (label t is the token at position t) with ``IGNORE`` where no loss is taken;
position t predicts token t+1. Losses return sums; the objectives divide by the step's target count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
