"""The tokens a reader would call text.

Well-formed tokens. Without a mask, the argmin of a trained model is nearly always junk nobody would
call a "token of text": special and reserved tokens (never trained, so pushed far down), lone bytes
of a multi-byte character, control characters, runs of whitespace. ``well_formed_mask`` keeps the
tokens that decode to visible text:
- not a special or added-special token, not UNK (they are markup, not text);
- decodes to valid UTF-8 (a lone byte of a multi-byte character decodes to U+FFFD);
- no control/format/unassigned/private characters (Unicode category C*), except newline and tab;
- not whitespace only: whitespace runs are legitimate text, but they are the typical collapse of a
  least-likely predictor and invisible in a table, so a reader could not judge them.
"""

from __future__ import annotations

import unicodedata
import weakref
from typing import Optional

import torch

_MASKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def is_well_formed(text: str) -> bool:
    """A token's decoded text is visible, valid text (see the module docstring)."""
    if not text or not text.strip() or "\ufffd" in text:
        return False
    return not any(unicodedata.category(ch).startswith("C") and ch not in "\n\t" for ch in text)


def well_formed_mask(tokenizer, vocab_size: Optional[int] = None) -> torch.Tensor:
    """BoolTensor[V]: True for tokens a least-likely predictor may emit; ids past the tokenizer are False."""
    key = tokenizer
    mask = _MASKS.get(key)
    if mask is None:
        n = len(tokenizer)
        special = set(tokenizer.all_special_ids)
        special |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
        if tokenizer.unk_token_id is not None:
            special.add(tokenizer.unk_token_id)
        mask = torch.zeros(n, dtype=torch.bool)
        for i in range(n):
            if i not in special:
                mask[i] = is_well_formed(tokenizer.decode([i], skip_special_tokens=False))
        _MASKS[key] = mask
    if vocab_size is not None and vocab_size != mask.numel():
        mask = fit_mask(mask, vocab_size)
    return mask


def fit_mask(mask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Pads with False (embedding rows past the tokenizer) or truncates to ``vocab_size``."""
    if mask.numel() >= vocab_size:
        return mask[:vocab_size]
    return torch.cat([mask, mask.new_zeros(vocab_size - mask.numel())])
