"""Language-model metrics on text: perplexity, bits per character, bits per byte.

Long texts are scored with a sliding window (as in the Hugging Face perplexity guide): windows of
``context`` tokens start every ``stride`` tokens and each token is scored once, in the first window that
reaches it, so it sees up to ``context - stride`` tokens of history. A BOS token is prepended (when the
tokenizer has one) so the first token is scored too. Bits per character and per byte divide the same
total by the text's length, so tokenizers of different granularity compare fairly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch

from lmforge.core.errors import LmforgeError
from lmforge.model.modes import evaluating


def window_spans(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows over ``n`` positions: (begin, end, first scored target position); targets are 1..n-1."""
    if context < 2 or not 1 <= stride <= context - 1:
        raise LmforgeError(f"sliding window: need context >= 2 and 1 <= stride < context (got {context}, {stride})")
    spans, scored_to = [], 1
    for begin in range(0, max(n - 1, 1), stride):
        end = min(begin + context, n)
        spans.append((begin, end, scored_to))
        scored_to = end
        if end == n:
            break
    return spans


@torch.no_grad()
def token_nll(model, ids: list[int], context: int, stride: int, batch_size: int = 8) -> torch.Tensor:
    """(n-1,) negative log-likelihood (nats) of ``ids[1:]``, each scored once with a sliding window."""
    device = next(model.parameters()).device
    seq = torch.tensor(ids, dtype=torch.long)
    out = torch.empty(max(len(ids) - 1, 0))
    spans = window_spans(len(ids), context, stride)
    # windows of equal length batch together (all but possibly the last)
    for length in sorted({e - b for b, e, _ in spans}):
        group = [s for s in spans if s[1] - s[0] == length]
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            x = torch.stack([seq[b:e] for b, e, _ in chunk]).to(device)  # (B, L)
            logits = model(input_ids=x).logits[:, :-1].float()  # (B, L-1, V): predicts x[:, 1:]
            nll = -torch.log_softmax(logits, -1).gather(-1, x[:, 1:, None])[..., 0].cpu()  # (B, L-1)
            for (b, e, first), row in zip(chunk, nll):
                # row[j] scores position b+1+j; keep the targets first..e-1 (not scored by earlier windows)
                out[first - 1 : e - 1] = row[first - b - 1 :]
    return out


def lm_metrics(nll_sum: float, n_tokens: int, n_chars: int, n_bytes: int) -> dict[str, float]:
    """Perplexity per token, bits per character and per UTF-8 byte, from a total NLL in nats."""
    return {
        "perplexity": math.exp(nll_sum / max(n_tokens, 1)),
        "bits_per_char": nll_sum / math.log(2) / max(n_chars, 1),
        "bits_per_byte": nll_sum / math.log(2) / max(n_bytes, 1),
    }


def score_text(
    model, tokenizer, text: str, *, context: Optional[int] = None, stride: Optional[int] = None, batch_size: int = 8
) -> dict[str, float]:
    """Perplexity, bits/char, bits/byte of ``text`` (plus the raw counts) under ``model``."""
    context = context or int(getattr(model.config, "max_position_embeddings", 1024))
    stride = stride or max(1, context // 2)
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if tokenizer.bos_token_id is not None:
        ids = [tokenizer.bos_token_id] + ids
    if len(ids) < 2:
        raise LmforgeError("text to score is empty")
    with evaluating(model):
        nll = token_nll(model, ids, context, stride, batch_size)
    total = float(nll.double().sum())
    out = lm_metrics(total, nll.numel(), len(text), len(text.encode("utf-8")))
    out.update(nll=total, tokens=float(nll.numel()))
    return out


def score_file(model, tokenizer, path: str | Path, *, max_chars: Optional[int] = None, **kwargs) -> dict[str, float]:
    """``score_text`` on a UTF-8 text file (its first ``max_chars`` characters when given)."""
    p = Path(path)
    if not p.is_file():
        raise LmforgeError(f"text file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LmforgeError(f"{p}: not UTF-8 text (byte {e.start})") from None
    return score_text(model, tokenizer, text[:max_chars] if max_chars else text, **kwargs)
