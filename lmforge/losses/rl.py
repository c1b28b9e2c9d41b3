"""Reward-driven losses as pure functions of log-probabilities and rewards (no model, no sampling).

Shapes: ``G`` groups (prompts) of ``K`` samples each, ``B = G * K`` sequences, ``T`` token positions.
Per-token tensors come with a 0/1 ``mask`` (B, T) of the completion tokens; every loss here returns one
value per sequence, so the caller decides how sequences are averaged over a step.

- RLOO (Ahmadian et al. 2024): each sample's baseline is the mean reward of the other K-1 of its group.
- GRPO (Shao et al. 2024): rewards normalised within the group by its mean and standard deviation.
- k3 KL estimator (Schulman 2020): ``exp(ref - logp) - (ref - logp) - 1``, unbiased and never negative.
- Trajectory balance (Malkin et al. 2022): ``(log Z + log P_F(y) - log R(y))^2``.
- Modified sub-trajectory balance (Hu et al. 2023, "Amortizing intractable inference in large language
  models"): every prefix may terminate, the flow of a prefix is ``R(prefix, stop) / P_F(stop | prefix)``.
- DPO (Rafailov et al. 2023): ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(G, K) rewards -> (G, K) advantages ``r_i - mean_{j != i} r_j``; each group's advantages sum to zero."""
    k = rewards.size(-1)
    if k < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt")
    others = (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    return rewards - others


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """(G, K) rewards -> ``(r - mean) / (std + eps)`` per group (unbiased std, as TRL's GRPO); ``scale=False``
    keeps ``r - mean`` (Dr. GRPO)."""
    centred = rewards - rewards.mean(-1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(-1, keepdim=True) + eps)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from a sample of pi: ``exp(ref - logp) - (ref - logp) - 1`` >= 0."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-token PPO loss ``-min(rho A, clip(rho, 1-eps, 1+eps) A)`` with ``rho = exp(logp - old_logp)``.

    ``advantages`` (B,) broadcast over tokens. On-policy (``old_logp`` = ``logp`` detached) it is ``-A``
    with the REINFORCE gradient ``-A * grad logp``."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(-1)
    return -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)


def policy_gradient_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    kl_coef: float = 0.0,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence loss (B,): the mean over its tokens of the clipped surrogate + ``kl_coef`` * k3 KL; and the
    per-sequence mean KL (B,) (zeros without a reference)."""
    mask = mask.to(logp.dtype)
    n = mask.sum(-1).clamp_min(1)
    per_token = clipped_surrogate(logp, old_logp, advantages, clip_eps)
    kl = torch.zeros_like(logp) if ref_logp is None else k3_kl(logp, ref_logp)
    loss = ((per_token + kl_coef * kl) * mask).sum(-1) / n
    return loss, (kl.detach() * mask).sum(-1) / n


def trajectory_balance(log_pf: torch.Tensor, log_r: torch.Tensor, log_z: torch.Tensor) -> torch.Tensor:
    """Per-sequence TB loss (B,): ``(log Z + sum_t log P_F(y_t | y_<t) - log R(y))^2``; ``log_pf`` is the summed
    log-probability of each whole sequence (B,), ``log_z`` (B,) the log-partition of its prompt."""
    return (log_z + log_pf - log_r) ** 2


def group_log_z(log_pf: torch.Tensor, log_r: torch.Tensor, k: int) -> torch.Tensor:
    """The log Z that minimises the group's TB loss: mean over its K samples of ``log R - log P_F`` (B,), detached.

    With it, TB's loss is the group's variance of ``log P_F - log R`` (the VarGrad estimator, Richter et al.
    2020): the same gradient as with a learned log Z at its optimum, and no parameter to learn."""
    d = (log_r - log_pf).detach().view(-1, k)
    return d.mean(-1, keepdim=True).expand_as(d).reshape(-1)


def modified_subtb(
    log_pf: torch.Tensor, log_pterm: torch.Tensor, log_r: torch.Tensor, lengths: torch.Tensor, lam: float = 1.0
) -> torch.Tensor:
    """Per-sequence modified sub-trajectory balance (B,) (Hu et al. 2023, eq. 5).

    ``log_pf`` (B, N): log P_F(y_t | y_<t) of the t-th generated token; ``log_pterm`` (B, N+1): log P_F(stop |
    y_<=i), the probability of terminating after i tokens; ``log_r`` (B, N+1): log R of the prefix of i tokens
    terminated there; ``lengths`` (B,): L, the tokens of each sequence (positions past it are ignored).
    For every pair 0 <= i < j <= L the sub-trajectory i -> j balances
    ``log R_i + sum_{t=i+1..j} log P_F(y_t) + log P_term_j - log R_j - log P_term_i``; squares are weighted by
    ``lam ** (j - i - 1)`` and normalised by the sequence's total weight.
    """
    # delta_t: the balance of the single step t -> t+1, (B, N)
    delta = log_r[:, :-1] + log_pf + log_pterm[:, 1:] - log_r[:, 1:] - log_pterm[:, :-1]
    cum = torch.cat([torch.zeros_like(delta[:, :1]), delta.cumsum(-1)], dim=-1)  # (B, N+1): cum[j] - cum[i]
    n = delta.size(1)
    i = torch.arange(n + 1, device=delta.device)
    span = i.view(1, -1) - i.view(-1, 1)  # (N+1, N+1): j - i
    pair = cum.unsqueeze(1) - cum.unsqueeze(2)  # (B, i, j) = cum[j] - cum[i]
    valid = (span > 0).unsqueeze(0) & (i.view(1, 1, -1) <= lengths.view(-1, 1, 1))  # i < j <= L
    decay = float(lam) ** (span - 1).clamp_min(0).to(delta.dtype)
    weight = torch.where(valid, decay, torch.zeros((), dtype=delta.dtype))
    total = weight.sum((1, 2)).clamp_min(1e-12)
    return (weight * pair**2).sum((1, 2)) / total


def dpo_loss(
    chosen_logp: torch.Tensor,
    rejected_logp: torch.Tensor,
    ref_chosen_logp: torch.Tensor,
    ref_rejected_logp: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO loss (sigmoid; conservative with ``label_smoothing``) and the implicit rewards
    ``beta * (pi - ref)`` of the chosen and rejected completions (detached). Inputs: summed log-probs (B,)."""
    chosen_ratio = chosen_logp - ref_chosen_logp
    rejected_ratio = rejected_logp - ref_rejected_logp
    margin = beta * (chosen_ratio - rejected_ratio)
    loss = -F.logsigmoid(margin) * (1 - label_smoothing) - F.logsigmoid(-margin) * label_smoothing
    return loss, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor, ignore: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next token and its mask: logits (B, T, V), unshifted labels (B, T) ->
    (B, T-1) log-probs (0 where ignored) and (B, T-1) 0/1 mask. Position t scores token t+1."""
    lg, lb = logits[:, :-1, :].float(), labels[:, 1:]
    mask = lb != ignore
    safe = lb.masked_fill(~mask, 0)
    logp = torch.gather(lg, -1, safe.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(lg, -1)
    return logp * mask, mask.to(logp.dtype)
