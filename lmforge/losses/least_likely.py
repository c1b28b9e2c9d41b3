"""Least-likely-token objectives, and the reference model they learn from.

Every loss is a pure function of logits (B, T, V), labels (B, T) and, where needed, the reference's
logits (B, T, V); it returns a *sum* over the positions whose shifted label is not -100, which the
registered objective (``objectives.py``) divides by ``batch["num_tokens"]``.

- ``least_likely``: soft inverse distillation, KL(softmax(-beta * z_ref) || q). The target puts most
  mass on the reference's least likely tokens. beta sets how sharp: beta -> 0 is the uniform
  distribution (what a loss that only pushes the likely tokens down converges to), large beta is the
  reference's argmin alone.
- ``least_likely_hard``: cross-entropy toward the reference's argmin (over well-formed tokens if asked),
  or toward the *contextual* argmin: among the reference's bottom few percent, the token most unusually
  unlikely in this context, which keeps predictions diverse where the plain argmin collapses.
- ``unlikelihood``: Welleck et al. 2019, token level: MLE + alpha * -log(1 - p(c)) for the tokens c
  already in the context (except the target itself).
- ``confidence_penalty``: Pereyra et al. 2017: cross-entropy - beta * entropy of the model's prediction.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from lmforge.losses.common import IGNORE, shift

# ---------------------------------------------------------------------------------------------
# Pure tensor functions (labels are *unshifted*: label t is the token at position t)
# ---------------------------------------------------------------------------------------------


def inverse_target(ref_logits: torch.Tensor, beta: float, allowed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Log-probabilities of softmax(-beta * z_ref), zero mass outside ``allowed`` (BoolTensor[V]); shape of z_ref."""
    z = -beta * ref_logits.float()
    if allowed is not None:
        z = z.masked_fill(~allowed.to(z.device), float("-inf"))
    return F.log_softmax(z, dim=-1)


def inverse_kl_sum(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    allowed: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Summed KL(softmax(-beta z_ref) || softmax(z)) over next-token positions with a label."""
    lg, lb = shift(logits, labels)  # (B, T-1, V), (B, T-1)
    ref, _ = shift(ref_logits, labels)
    keep = lb != IGNORE
    log_p = inverse_target(ref[keep], beta, allowed)  # (N, V) target
    log_q = F.log_softmax(lg[keep].float(), dim=-1)  # (N, V) model
    p = log_p.exp()
    log_p = log_p.masked_fill(p == 0, 0.0)  # 0 * log 0 = 0, not NaN, for tokens outside ``allowed``
    return (p * (log_p - log_q)).sum()


def argmin_targets(ref_logits: torch.Tensor, allowed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The reference's least likely token at each position (B, T), among ``allowed`` (BoolTensor[V]) if given."""
    z = ref_logits.float()
    if allowed is not None:
        z = z.masked_fill(~allowed.to(z.device), float("inf"))
    return z.argmin(dim=-1)


def contextual_argmin_targets(
    ref_logits: torch.Tensor, keep: torch.Tensor, allowed: Optional[torch.Tensor] = None, bottom: float = 0.02
) -> torch.Tensor:
    """Among the reference's ``bottom`` fraction of tokens (and ``allowed``), the most *unusually* unlikely
    one here: lowest z(v | context) - mean of z(v) over the batch's scored positions. (B, T)

    The plain argmin is dominated by globally rare tokens (one character can be the argmin of 14% of
    contexts); subtracting each token's mean logit cancels that, while ``bottom`` keeps the target's
    reference rank >= 1 - bottom.
    """
    z = ref_logits.float()  # (B, T, V)
    V = z.size(-1)
    kth = z.kthvalue(min(V, int(bottom * (V - 1)) + 1), dim=-1, keepdim=True).values  # (B, T, 1)
    ok = z <= kth
    if allowed is not None:
        allowed = allowed.to(z.device)
        ok = ok & allowed
        ok = torch.where(ok.any(-1, keepdim=True), ok, allowed)  # no allowed token that low: any allowed one
    mean = z[keep].mean(0) if keep.any() else z.new_zeros(V)  # (V,) each token's usual logit
    return (z - mean).masked_fill(~ok, float("inf")).argmin(dim=-1)


def hard_inverse_ce_sum(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    labels: torch.Tensor,
    allowed: Optional[torch.Tensor] = None,
    bottom: Optional[float] = None,
) -> torch.Tensor:
    """Summed cross-entropy toward the reference's argmin (or, with ``bottom``, the contextual argmin)
    at next-token positions with a label."""
    lg, lb = shift(logits, labels)
    ref, _ = shift(ref_logits, labels)
    keep = lb != IGNORE
    target = argmin_targets(ref, allowed) if bottom is None else contextual_argmin_targets(ref, keep, allowed, bottom)
    target = target.masked_fill(~keep, IGNORE)  # (B, T-1)
    return F.cross_entropy(
        lg.reshape(-1, lg.size(-1)).float(), target.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )


def previous_token_candidates(
    input_ids: torch.Tensor, vocab_size: int, attention_mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """BoolTensor (B, T-1, V): c is a candidate at position t when it occurs in input_ids[:, :t+1].

    Position t predicts token t+1, so its context is tokens 0..t (padding excluded). The target itself
    is removed by the caller (Welleck et al.: C_t = {x_1..x_{t-1}} minus {x_t}).
    """
    B, T = input_ids.shape
    pos = torch.arange(T, device=input_ids.device).expand(B, T)  # (B, T)
    if attention_mask is not None:
        pos = pos.masked_fill(~attention_mask.bool(), T)  # padding never counts as seen
    # first position at which each token occurs (T when never): (B, V); avoids a (B, T, V) integer one-hot
    first = torch.full((B, vocab_size), T, dtype=pos.dtype, device=pos.device)
    first = first.scatter_reduce(1, input_ids, pos, reduce="amin")
    return first.unsqueeze(1) <= torch.arange(T - 1, device=pos.device).view(1, -1, 1)  # (B, T-1, V)


def unlikelihood_sum(
    logits: torch.Tensor, input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Summed -log(1 - p(c)) over previous-context candidates c != target, at positions with a label."""
    lg, lb = shift(logits, labels)
    cand = previous_token_candidates(input_ids, lg.size(-1), attention_mask)  # (B, T-1, V)
    keep = lb != IGNORE
    cand = cand & keep.unsqueeze(-1)
    target = lb.clamp_min(0).unsqueeze(-1)
    cand = cand.scatter(-1, target, False)  # never push the correct token down
    p = F.softmax(lg.float(), dim=-1)
    # clamp as the paper's code does: 1 - p can underflow to 0 when the model is certain
    return -(torch.log((1.0 - p).clamp_min(1e-5)) * cand).sum()


def entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed entropy (nats) of the model's next-token distribution at positions with a label."""
    lg, lb = shift(logits, labels)
    logq = F.log_softmax(lg[lb != IGNORE].float(), dim=-1)  # (N, V)
    return -(logq.exp() * logq).sum()
