"""Why GFlowNets keep diversity: on "emit one integer 0-99" (two digit tokens), trajectory balance learns to
sample n in proportion to R(n), while RLOO's policy gradient collapses onto the maximum of R.

The policy is autoregressive and tabular: P(n) = P(d1) P(d2 | d1); its exact distribution over the 100
integers is computable, so the KL to the target R / sum R is exact, not estimated.
"""

from __future__ import annotations

import torch

from lmforge.losses import rl


def reward(n: torch.Tensor) -> torch.Tensor:
    """Two modes of different height and a floor: R(20) = 1.01, R(75) = 0.61."""
    n = n.float()
    return torch.exp(-((n - 20) ** 2) / 50) + 0.6 * torch.exp(-((n - 75) ** 2) / 30) + 0.01


class DigitPolicy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = torch.nn.Parameter(torch.zeros(10))
        self.second = torch.nn.Parameter(torch.zeros(10, 10))
        self.log_z = torch.nn.Parameter(torch.zeros(()))  # trajectory balance's learned log-partition

    def log_probs(self) -> torch.Tensor:
        """log P(n) for n = 0..99 (n = 10 d1 + d2)."""
        return (self.first.log_softmax(-1).unsqueeze(1) + self.second.log_softmax(-1)).reshape(100)

    def sample(self, k: int, g: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return torch.multinomial(self.log_probs().exp(), k, replacement=True, generator=g)


def train(kind: str, steps: int = 600, k: int = 16, groups: int = 4, lr: float = 0.05) -> DigitPolicy:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pol = DigitPolicy()
    opt = torch.optim.Adam([{"params": [pol.first, pol.second]}, {"params": [pol.log_z], "lr": lr * 10}], lr=lr)
    for _ in range(steps):
        n = pol.sample(groups * k, g)  # on-policy samples, G groups of K
        log_pf = pol.log_probs()[n]
        r = reward(n)
        if kind == "tb":
            loss = rl.trajectory_balance(log_pf, r.log(), pol.log_z.expand_as(log_pf)).mean()
        else:  # RLOO, one token-free sequence per sample: the on-policy surrogate -A * log P(n)
            adv = rl.rloo_advantages(r.view(groups, k)).reshape(-1)
            loss, _ = rl.policy_gradient_loss(
                log_pf.unsqueeze(1), log_pf.detach().unsqueeze(1), None, torch.ones(len(n), 1), adv
            )
            loss = loss.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return pol


def kl_to_target(pol: DigitPolicy) -> float:
    target = reward(torch.arange(100))
    target = target / target.sum()
    with torch.no_grad():
        return float((target * (target.log() - pol.log_probs())).sum())


def test_trajectory_balance_samples_in_proportion_to_reward(one_thread):
    pol = train("tb")
    assert kl_to_target(pol) < 0.05
    # log Z learned the partition function sum_n R(n)
    assert abs(pol.log_z.item() - reward(torch.arange(100)).sum().log().item()) < 0.1
    p = pol.log_probs().exp()
    assert p[70:80].sum() > 0.2  # the lower mode keeps its share (target ~0.31)


def test_rloo_collapses_onto_the_maximum(one_thread):
    pol = train("rloo")
    p = pol.log_probs().exp()
    assert kl_to_target(pol) > 1.0
    assert p[int(reward(torch.arange(100)).argmax())] > 0.8
    assert p[70:80].sum() < 0.02  # the second mode is gone
