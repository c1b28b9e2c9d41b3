"""Token-by-token hooks for ``generate_ids``: each row's new token, with its log-probability under the model's
own distribution and the most likely alternatives, handed to a per-row sink as the batch decodes.

    recorder = LogprobRecorder()
    rows = RowStreams(sinks, recorder, top_k=5, stop_token_ids=stop_ids(tokenizer))
    generate_ids(model, tokenizer, ids, settings, budget, observers=[recorder], stopping=[rows])

A sink is any object with ``push(token_id, logprob, alternatives) -> bool`` and ``finish(reason)``. ``push``
returns True when the row is finished by the sink's own rule (a stop string, a deadline; it then finishes
itself); otherwise ``finish`` is called once with ``"stop"`` (an end-of-sequence or end-of-turn token) or
``"length"`` (the row's budget).
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch
from transformers import LogitsProcessor, StoppingCriteria


class Sink(Protocol):
    def push(self, token_id: int, logprob: Optional[float], alternatives: list[tuple[int, float]]) -> bool: ...

    def finish(self, reason: str) -> None: ...


def token_logprobs(logprobs: torch.Tensor, tokens: torch.Tensor, k: int) -> tuple[list[float], list[list]]:
    """Per row: the log-probability of ``tokens`` (B,) under ``logprobs`` (B, V), and its ``k`` best (id, lp)."""
    chosen = logprobs.gather(1, tokens[:, None].to(logprobs.device))[:, 0].tolist()
    if k <= 0:
        return chosen, [[] for _ in chosen]
    vals, idx = logprobs.topk(min(k, logprobs.size(-1)), dim=-1)
    return chosen, [list(zip(i, v)) for i, v in zip(idx.tolist(), vals.tolist())]


class LogprobRecorder(LogitsProcessor):
    """First in the processor list: keeps the log-softmax of the raw logits (B, V) of the current step."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.last: Optional[torch.Tensor] = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.enabled:
            self.last = torch.log_softmax(scores.float(), dim=-1)
        return scores


class RowStreams(StoppingCriteria):
    """After each step: every live row's new token goes to its sink; a row ends at a stop token, when its
    sink says so, or after ``budgets[row]`` tokens. Rows that ended get no more tokens (they decode padding)."""

    def __init__(self, sinks: list, recorder: LogprobRecorder, top_k: int, stop_token_ids, budgets: list[int]):
        self.sinks, self.recorder, self.top_k = sinks, recorder, top_k
        self.stop_ids = set(stop_token_ids or ())
        self.budgets = budgets
        self.counts = [0] * len(sinks)
        self.done = torch.zeros(len(sinks), dtype=torch.bool)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        tokens = input_ids[:, -1]
        lps, alts = (None, None)
        if self.recorder.enabled and self.recorder.last is not None:
            lps, alts = token_logprobs(self.recorder.last, tokens, self.top_k)
        for row, tok in enumerate(tokens.tolist()):
            if self.done[row]:
                continue
            if tok in self.stop_ids:
                self._end(row, "stop")
                continue
            self.counts[row] += 1
            ended = self.sinks[row].push(tok, lps[row] if lps else None, alts[row] if alts else [])
            if ended:
                self._end(row, None)
            elif self.counts[row] >= self.budgets[row]:
                self._end(row, "length")
        return self.done.to(input_ids.device).clone()

    def _end(self, row: int, reason: Optional[str]) -> None:
        self.done[row] = True
        if reason is not None:
            self.sinks[row].finish(reason)

    def close(self) -> None:
        """After ``generate_ids`` returned: rows still open ran out of the call's budget."""
        for row in range(len(self.sinks)):
            if not self.done[row]:
                self._end(row, "length")
