"""Byte-pair encoding tokenizers trained with Hugging Face ``tokenizers``, and loading any tokenizer.

Small vocabularies (down to ~100) work because the base alphabet is characters, not bytes: the most
frequent characters of the corpus plus JSON's punctuation and digits (so constrained JSON decoding
always has the tokens it needs); anything else becomes UNK. Whitespace, newlines included, is kept
exactly, so verse keeps its line breaks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from lmforge.core.errors import LmforgeError

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
SPECIALS = [PAD, BOS, EOS, UNK]
# Always in the alphabet: JSON's structural characters, digits, quote and escape, space and newline.
JSON_ALPHABET = list('{}[]:,"\\-.0123456789 \n\t') + list("truefalsn")
# Pieces, as Llama 3 splits text: English contractions; a run of letters with at most one other character
# before it (" the", "'tis"); up to three digits; a run of punctuation with the line breaks after it; line
# breaks with the spaces before them; other whitespace. BPE merges never cross a piece. The regex is Llama
# 3's own, character for character, so llama.cpp (pre-tokenizer "llama-bpe") splits exported models' text
# exactly as training did.
PRETOKENIZE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
# The same with one piece per digit (Qwen2's regex; llama.cpp's "qwen2"): numbers are then read and copied
# digit by digit.
PRETOKENIZE_DIGITS = PRETOKENIZE.replace(r"\p{N}{1,3}", r"\p{N}")


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: Optional[str | Path] = None,
    min_frequency: int = 2,
    model_max_length: int = 1024,
    split_digits: bool = False,
):
    """Trains a character-level BPE on ``texts``; returns a ``PreTrainedTokenizerFast`` (saved if out_dir)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    counts = Counter()
    for t in texts:
        counts.update(t)
    if not counts:
        raise LmforgeError("cannot train a tokenizer on an empty corpus")
    room = vocab_size - len(SPECIALS)
    base = list(dict.fromkeys(JSON_ALPHABET))
    if room < len(base):
        raise LmforgeError(f"tokenizer.vocab_size={vocab_size} is too small: need at least {len(base) + len(SPECIALS)}")
    # fill the alphabet with the corpus's most frequent characters, up to ~3/4 of the vocabulary
    alphabet_size = max(len(base), min(len(counts) + len(base), int(room * 0.75)))
    for ch, _ in counts.most_common():
        if len(base) >= alphabet_size:
            break
        if ch not in base:
            base.append(ch)

    tok = Tokenizer(models.BPE(unk_token=UNK, fuse_unk=True))
    pattern = PRETOKENIZE_DIGITS if split_digits else PRETOKENIZE
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIALS,
        initial_alphabet=base,
        limit_alphabet=len(base),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def chars_per_token(tokenizer, texts: Iterable[str]) -> float:
    n_chars = n_tokens = 0
    for t in texts:
        n_chars += len(t)
        n_tokens += len(tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"])
    return n_chars / max(n_tokens, 1)


def ensure_pad(tokenizer) -> bool:
    """The PAD rule: PAD must exist and differ from EOS, or a model learns to never stop.

    Adds a distinct ``<pad>`` when needed; returns True when the vocabulary grew (resize embeddings).
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return False
    before = len(tokenizer)
    tokenizer.add_special_tokens({"pad_token": PAD})
    return len(tokenizer) > before
