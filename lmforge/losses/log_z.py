"""A learned log Z for trajectory balance: a small head on the prompt's last hidden state.

TB's loss ``(log Z(x) + log P_F(y | x) - log R(x, y))^2`` is zero for every y exactly when P_F(y | x) is
R(x, y) / Z(x), so at the fixed point the head holds log Z(x) = log sum_y R(x, y), the log-partition of each
prompt. The head is ``log Z(x) = b + w . u / d``: u the layer-normalised final hidden state (d features) at the
prompt's last token, detached (log Z learns from the policy's features without steering them). The 1/d makes
an Adam step of w move log Z by about the learning rate, as a step of b does. b starts at the first batch's
mean of log R - log P_F (the VarGrad estimate of log Z): log R is a sum over tokens, far from 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class LogZHead(torch.nn.Module):
    """``head(states (B, d), estimate (B,)) -> log Z (B,)``; ``lr`` is its learning rate in the optimizer."""

    def __init__(self, hidden_size: int, lr: float):
        super().__init__()
        self.proj = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.proj.weight)
        torch.nn.init.zeros_(self.proj.bias)
        # set once b holds the first estimate; saved with the weights, so a resumed run does not start it again
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))
        self.lr = lr

    def forward(self, states: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
        if not bool(self.started):
            self._start(estimate)
        # fp32 whatever the run's precision: log Z is ~ -100 for a long completion, bf16 would round it by 0.5
        with torch.autocast(device_type=states.device.type, enabled=False):
            u = F.layer_norm(states.detach().float(), states.shape[-1:])  # (B, d)
            return self.proj.bias + u @ self.proj.weight.squeeze(0) / u.size(-1)  # (B,)

    @torch.no_grad()
    def _start(self, estimate: torch.Tensor) -> None:
        mean = estimate.detach().float().mean()
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # every process starts alike
            torch.distributed.all_reduce(mean)
            mean /= torch.distributed.get_world_size()
        self.proj.bias.fill_(float(mean))
        self.started.fill_(True)


def prompt_states(hidden: torch.Tensor, completion_start: torch.Tensor) -> torch.Tensor:
    """The hidden state (B, d) at each row's last prompt token, from the final layer's states (B, T, d)."""
    rows = torch.arange(hidden.size(0), device=hidden.device)
    return hidden[rows, completion_start.to(hidden.device) - 1]
