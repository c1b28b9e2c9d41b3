"""The reward-driven losses against hand computations on small tensors, and their invariants."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.losses import rl


def test_rloo_advantages_by_hand_and_sum_to_zero():
    r = torch.tensor([[1.0, 0.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0]])
    a = rl.rloo_advantages(r)
    # sample 0: 1 - (0 + 0 + 3) / 3 = 0; sample 3: 3 - 1/3
    assert a[0].tolist() == pytest.approx([0.0, -4 / 3, -4 / 3, 3 - 1 / 3])
    assert a[1].tolist() == pytest.approx([0.0] * 4)
    g = torch.Generator().manual_seed(0)
    many = rl.rloo_advantages(torch.rand(50, 7, generator=g))
    assert many.sum(-1).abs().max() < 1e-5
    with pytest.raises(ValueError):
        rl.rloo_advantages(torch.ones(3, 1))


def test_grpo_advantages_by_hand():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    a = rl.grpo_advantages(r, eps=0.0)
    assert a[0].tolist() == pytest.approx([-1.0, 0.0, 1.0])  # mean 2, unbiased std 1
    assert rl.grpo_advantages(r, scale=False)[0].tolist() == pytest.approx([-1.0, 0.0, 1.0])
    assert rl.grpo_advantages(torch.tensor([[5.0, 5.0]]))[0].tolist() == [0.0, 0.0]


def test_k3_kl_by_hand_and_nonnegative():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    # ratio ref/pi = 0.5: 0.5 - log 0.5 - 1
    assert rl.k3_kl(logp, ref).item() == pytest.approx(0.5 - math.log(0.5) - 1)
    x = torch.randn(1000)
    assert (rl.k3_kl(x, torch.randn(1000)) >= 0).all()
    assert rl.k3_kl(x, x).abs().max() == 0
    # its expectation under pi is KL(pi || ref): a 3-outcome check
    pi, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.5, 0.3])
    est = (pi * rl.k3_kl(pi.log(), q.log())).sum()
    assert est.item() == pytest.approx((pi * (pi / q).log()).sum().item(), abs=1e-6)


def test_clipped_surrogate_by_hand():
    logp = torch.tensor([[math.log(1.5), math.log(0.5)]])
    old = torch.zeros(1, 2)
    adv = torch.tensor([2.0])
    # ratio 1.5 clipped to 1.2 for a positive advantage; ratio 0.5 is not clipped from below (min picks it)
    assert rl.clipped_surrogate(logp, old, adv, 0.2)[0].tolist() == pytest.approx([-2.4, -1.0])
    neg = rl.clipped_surrogate(logp, old, -adv, 0.2)[0]
    assert neg.tolist() == pytest.approx([3.0, 1.6])  # -min(-3, -2.4) = 3; -min(-1, -1.6) = 1.6


def test_on_policy_gradient_is_reinforce():
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, kl = rl.policy_gradient_loss(logp, logp.detach(), None, mask, torch.tensor([3.0]))
    loss.sum().backward()
    assert loss.item() == pytest.approx(-3.0)
    assert logp.grad[0].tolist() == pytest.approx([-1.5, -1.5, 0.0])  # -A / n on unmasked tokens
    assert kl.item() == 0


def test_policy_loss_with_kl_by_hand():
    logp = torch.tensor([[math.log(0.5), math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.5)]])
    loss, kl = rl.policy_gradient_loss(logp, logp, ref, torch.ones(1, 2), torch.tensor([0.0]), kl_coef=0.1)
    k3 = 0.5 - math.log(0.5) - 1
    assert kl.item() == pytest.approx(k3 / 2)
    assert loss.item() == pytest.approx(0.1 * k3 / 2)


def test_trajectory_balance_and_group_log_z():
    log_pf, log_r = torch.tensor([-2.0, -3.0]), torch.tensor([0.5, 1.0])
    assert rl.trajectory_balance(log_pf, log_r, torch.tensor([1.0, 1.0])).tolist() == pytest.approx([2.25, 9.0])
    z = rl.group_log_z(log_pf, log_r, k=2)
    assert z.tolist() == pytest.approx([3.25, 3.25])  # mean of 2.5 and 4.0
    # at the group's optimum the loss is the group's (biased) variance of log P_F - log R
    assert rl.trajectory_balance(log_pf, log_r, z).mean().item() == pytest.approx(0.75**2)


def _subtb_by_loops(log_pf, log_pterm, log_r, length, lam):
    num = den = 0.0
    for i in range(length + 1):
        for j in range(i + 1, length + 1):
            term = log_r[i] + sum(log_pf[t] for t in range(i, j)) + log_pterm[j] - log_r[j] - log_pterm[i]
            w = lam ** (j - i - 1)
            num += w * term**2
            den += w
    return num / den


@pytest.mark.parametrize("lam", [1.0, 0.9, 0.5])
def test_modified_subtb_against_explicit_sum(lam):
    g = torch.Generator().manual_seed(3)
    B, N = 3, 5
    log_pf = -torch.rand(B, N, generator=g, dtype=torch.float64)
    log_pterm = -torch.rand(B, N + 1, generator=g, dtype=torch.float64) * 3
    log_r = torch.randn(B, N + 1, generator=g, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 1])
    got = rl.modified_subtb(log_pf, log_pterm, log_r, lengths, lam)
    for b in range(B):
        want = _subtb_by_loops(log_pf[b].tolist(), log_pterm[b].tolist(), log_r[b].tolist(), int(lengths[b]), lam)
        assert got[b].item() == pytest.approx(want, rel=1e-9)


def test_modified_subtb_is_zero_for_a_balanced_policy():
    # a policy whose flows are consistent (F(s) P(y|s) = F(s')) with F(s) = R(s stop) / P(stop | s)
    log_pf = torch.tensor([[math.log(0.6), math.log(0.3)]])
    log_pterm = torch.tensor([[math.log(0.4), math.log(0.5), math.log(1.0)]])
    # choose R so every step balances: log R_{t+1} = log R_t + log pf_t + log pterm_{t+1} - log pterm_t
    r0 = 0.0
    r1 = r0 + log_pf[0, 0] + log_pterm[0, 1] - log_pterm[0, 0]
    r2 = r1 + log_pf[0, 1] + log_pterm[0, 2] - log_pterm[0, 1]
    log_r = torch.tensor([[r0, float(r1), float(r2)]])
    assert rl.modified_subtb(log_pf, log_pterm, log_r, torch.tensor([2])).item() == pytest.approx(0.0, abs=1e-12)


def test_dpo_loss_and_implicit_rewards_by_hand():
    pc, pr, rc, rr = torch.tensor([-5.0]), torch.tensor([-7.0]), torch.tensor([-6.0]), torch.tensor([-6.5])
    loss, cr, rj = rl.dpo_loss(pc, pr, rc, rr, beta=0.5)
    margin = 0.5 * ((-5 + 6) - (-7 + 6.5))  # 0.75
    assert loss.item() == pytest.approx(math.log1p(math.exp(-margin)))
    assert cr.item() == pytest.approx(0.5) and rj.item() == pytest.approx(-0.25)
    smooth, _, _ = rl.dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1)
    want = 0.9 * math.log1p(math.exp(-margin)) + 0.1 * math.log1p(math.exp(margin))
    assert smooth.item() == pytest.approx(want)


def test_token_logprobs_matches_log_softmax():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, generator=g)
    labels = torch.tensor([[-100, 3, 1, -100], [-100, -100, 5, 0]])
    logp, mask = rl.token_logprobs(logits, labels)
    ls = logits.log_softmax(-1)
    assert mask.tolist() == [[1, 1, 0], [0, 1, 1]]
    assert logp[0, 0].item() == pytest.approx(ls[0, 0, 3].item(), abs=1e-6)
    assert logp[1, 2].item() == pytest.approx(ls[1, 2, 0].item(), abs=1e-6)
    assert logp[0, 2].item() == 0
