"""The reward-driven objectives, ``(model, batch, reference, **args) -> (loss, metrics)``, over the pure losses
of ``losses/rl.py``. Their batches come from rollouts (``lmforge/train/rollouts.py``) or preference pairs.

A rollout batch holds, beside ``input_ids`` / ``attention_mask`` / ``labels`` (-100 on prompt and padding):
``rewards`` (B,), ``advantages`` (B,), ``group_size`` K, ``num_seqs`` (sequences in the whole optimizer
step, the divisor that keeps accumulation exact), ``old_logprobs`` (B, T-1) when a rollout is reused, and for
the GFlowNet objectives ``ref_temperature`` T of this step. A pair batch holds the chosen rows then the
rejected rows, ``num_pairs`` (the step's) and ``num_pairs_here``; pairs built from rollouts add ``pair_mask``.
"""

from __future__ import annotations

import torch

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import objective
from lmforge.losses.common import forward_logits
from lmforge.losses.log_z import prompt_states
from lmforge.losses.rl import (
    dpo_loss,
    group_log_z,
    modified_subtb,
    policy_gradient_loss,
    token_logprobs,
    trajectory_balance,
)


def _need(batch: dict, key: str, name: str):
    if key not in batch:
        raise LmforgeError(f"train.objective={name} needs rollout batches (lmforge rl), not {key!r}-less rows")
    return batch[key]


def _reference_logprobs(reference, batch: dict, name: str) -> torch.Tensor:
    if reference is None:
        raise LmforgeError(f"train.objective={name} needs a reference model (the loop passes none)")
    return token_logprobs(reference(batch), batch["labels"])[0]


def policy_gradient(model, batch, reference=None, kl_coef: float = 0.05, clip_eps: float = 0.2):
    """RLOO / GRPO: the clipped surrogate with the batch's advantages + kl_coef * k3 KL, mean per sequence."""
    adv = _need(batch, "advantages", "rloo/grpo")
    logp, mask = token_logprobs(forward_logits(model, batch), batch["labels"])
    ref = _reference_logprobs(reference, batch, "rloo/grpo") if kl_coef else None
    old = batch.get("old_logprobs")
    loss, kl = policy_gradient_loss(logp, logp.detach() if old is None else old, ref, mask, adv, kl_coef, clip_eps)
    return loss.sum() / batch["num_seqs"], {"kl_sum": kl.sum()}


objective("rloo", needs_reference=True)(policy_gradient)
objective("grpo", needs_reference=True)(policy_gradient)


def _log_reward(batch: dict, ref_logp: torch.Tensor, reward_scale: float) -> torch.Tensor:
    """log R = log p_ref(y | x) / T + beta * r, per sequence (B,)."""
    return ref_logp.sum(-1) / batch["ref_temperature"] + reward_scale * batch["rewards"].to(ref_logp.dtype)


@objective("tb", needs_reference=True)
def tb(model, batch, reference=None, reward_scale: float = 1.0, log_z_head=None):
    """Trajectory balance with each prompt's log Z estimated from its K samples (VarGrad), or given by
    ``log_z_head`` (``losses/log_z.py``, rl.log_z: learned) from the prompt's last hidden state."""
    _need(batch, "rewards", "tb")
    if log_z_head is None:
        logits = forward_logits(model, batch)
    else:  # rollout rows are right-padded, never packed: the plain call, with the final hidden states
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        logits = out.logits
    logp, _ = token_logprobs(logits, batch["labels"])
    log_pf = logp.sum(-1)
    log_r = _log_reward(batch, _reference_logprobs(reference, batch, "tb"), reward_scale)
    log_z = group_log_z(log_pf, log_r, int(batch["group_size"]))
    if log_z_head is not None:
        log_z = log_z_head(prompt_states(out.hidden_states[-1], batch["completion_start"]), log_z)
    loss = trajectory_balance(log_pf, log_r, log_z)
    return loss.sum() / batch["num_seqs"], {"log_z_sum": log_z.detach().sum()}


def prefix_logprobs(logits: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row's completion y_1..y_L (starting at ``completion_start``): log P(y_t | y_<t) (B, N) and
    log P(stop | y_<=i) (B, N+1), stop being the EOS token; N is the longest completion."""
    start, lengths, eos = batch["completion_start"], batch["completion_len"], batch["eos_id"]
    n = int(lengths.max())
    logsm = logits.float().log_softmax(-1)  # (B, T, V)
    T = logits.size(1)
    pos = (start.view(-1, 1) - 1 + torch.arange(n + 1, device=logits.device)).clamp(max=T - 1)  # (B, N+1)
    rows = torch.arange(logits.size(0), device=logits.device).view(-1, 1)
    log_pterm = logsm[rows, pos, eos]  # (B, N+1)
    nxt = batch["input_ids"][rows, (pos[:, :-1] + 1).clamp(max=T - 1)]  # y_1..y_N
    log_pf = logsm[rows, pos[:, :-1], nxt]
    live = torch.arange(n, device=logits.device).view(1, -1) < lengths.view(-1, 1)
    return log_pf * live, log_pterm


@objective("subtb", needs_reference=True)
def subtb(model, batch, reference=None, reward_scale: float = 1.0, subtb_lambda: float = 1.0):
    """Modified sub-trajectory balance (Hu et al. 2023): every prefix may stop; its log-reward is the
    reference's log-likelihood of the prefix then EOS, over T, plus beta times the prefix's reward."""
    prefix_rewards = _need(batch, "prefix_rewards", "subtb")  # (B, N+1)
    log_pf, log_pterm = prefix_logprobs(forward_logits(model, batch), batch)
    with torch.no_grad():
        if reference is None:
            raise LmforgeError("train.objective=subtb needs a reference model (the loop passes none)")
        ref_pf, ref_pterm = prefix_logprobs(reference(batch), batch)
        ref_prefix = torch.cat([torch.zeros_like(ref_pf[:, :1]), ref_pf.cumsum(-1)], -1)  # (B, N+1)
        log_r = (ref_prefix + ref_pterm) / batch["ref_temperature"] + reward_scale * prefix_rewards
    loss = modified_subtb(log_pf, log_pterm, log_r, batch["completion_len"], subtb_lambda)
    return loss.sum() / batch["num_seqs"], {}


@objective("dpo", needs_reference=True)
def dpo(model, batch, reference=None, beta: float = 0.1, label_smoothing: float = 0.0):
    """DPO on pair batches (chosen rows, then rejected rows) against the reference; metrics: implicit rewards."""
    pairs = _need(batch, "num_pairs_here", "dpo")
    logp, _ = token_logprobs(forward_logits(model, batch), batch["labels"])
    ref = _reference_logprobs(reference, batch, "dpo")
    seq, ref_seq = logp.sum(-1), ref.sum(-1)
    loss, chosen_r, rejected_r = dpo_loss(
        seq[:pairs], seq[pairs:], ref_seq[:pairs], ref_seq[pairs:], beta, label_smoothing
    )
    metrics = {
        "chosen_reward_sum": chosen_r.sum(),
        "rejected_reward_sum": rejected_r.sum(),
        "accuracy_sum": (chosen_r > rejected_r).float().sum(),
    }
    if "pair_mask" in batch:  # pairs built from rollouts: a placeholder pair counts for nothing
        loss = loss * batch["pair_mask"].to(loss.dtype)
    return loss.sum() / batch["num_pairs"], metrics
