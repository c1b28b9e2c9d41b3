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
    """The model's logits (B, T, V) for ``batch``.

    A packed batch (``lmforge/data/packing.py``) has ``position_ids`` restarting at 0 at every example and a
    block-diagonal causal mask (B, 1, T, T), True where a token may attend. Each attention kernel gets it as
    it expects: sdpa the booleans, eager (and others) an additive mask, flash kernels no mask but the rows
    laid end to end in one, which they cut into examples where the positions restart (varlen).
    """
    mask, pos = batch.get("attention_mask"), batch.get("position_ids")
    if pos is None:
        return model(input_ids=batch["input_ids"], attention_mask=mask).logits
    ids = batch["input_ids"]
    config = getattr(getattr(model, "module", model), "config", None)  # DDP keeps the model in .module
    impl = str(getattr(config, "_attn_implementation", ""))
    if "flash" in impl:  # transformers finds packed sequences from position_ids in a single row only
        flat = model(input_ids=ids.reshape(1, -1), position_ids=pos.reshape(1, -1), use_cache=False).logits
        return flat.view(*ids.shape, -1)
    if impl != "sdpa" and mask is not None and mask.dtype == torch.bool:  # eager adds the mask to the scores
        mask = torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, torch.finfo(torch.float32).min)
    return model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
