"""Least-likely decoding as Hugging Face ``LogitsProcessor``s: no training, just the negated logits.

Negating the logits turns greedy search into argmin search, and sampling at temperature T into
sampling from softmax(-z / T). In ``generate`` custom processors run before the sampling warpers
(temperature, top-k, top-p), so top-k after negation keeps the k *least* likely tokens. Processors
that run before ours (repetition penalty) act on the original logits: a penalised token becomes
*more* likely after negation, so leave repetition_penalty at 1.
The well-formed mask is ``lmforge.model.vocab.well_formed_mask``.
"""

from __future__ import annotations

from typing import Optional

import torch
from transformers import LogitsProcessor

from lmforge.model.vocab import fit_mask, well_formed_mask


def negate_scores(scores: torch.Tensor, allowed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """-scores (..., V), keeping -inf where a token was already forbidden, and -inf outside ``allowed``."""
    # a token an earlier processor set to -inf must not become +inf (the only pick, or NaN after softmax)
    out = torch.where(torch.isneginf(scores), scores, -scores)
    if allowed is not None:
        out = out.masked_fill(~fit_mask(allowed, scores.size(-1)).to(scores.device), float("-inf"))
    return out


class NegateLogitsProcessor(LogitsProcessor):
    """Scores -> -scores: greedy picks the argmin; sampling draws from softmax(-z / temperature)."""

    def __init__(self, allowed: Optional[torch.Tensor] = None):
        self.allowed = allowed  # BoolTensor[V] or None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return negate_scores(scores, self.allowed)


def least_likely_processors(tokenizer, well_formed: bool = True) -> list[LogitsProcessor]:
    """The processors for ``generate(..., logits_processor=LogitsProcessorList(these))``."""
    return [NegateLogitsProcessor(well_formed_mask(tokenizer) if well_formed else None)]
