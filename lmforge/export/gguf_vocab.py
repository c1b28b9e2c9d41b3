"""A Hugging Face BPE tokenizer as llama.cpp's BPE vocabulary (``tokenizer.ggml.model = "gpt2"``).

llama.cpp tokenizes a BPE model in three steps, and each must agree with the Hugging Face tokenizer:

1. **Pieces.** It splits text with a pre-tokenizer it knows by *name* (``tokenizer.ggml.pre``); the file
   cannot carry a regex. So the tokenizer's split regex must be one of llama.cpp's, character for character
   (``PRE_TOKENIZERS``); lmforge trains with Llama 3's (``llama-bpe``) or, digit by digit, Qwen2's.
2. **Symbols.** It maps each piece's UTF-8 bytes to GPT-2's printable byte alphabet ("Ġ" for a space) and
   starts from one symbol per byte. lmforge's tokenizers are character-level (no byte-level step), so
   every token and merge is written in that alphabet here, and a multi-byte character of the alphabet gets
   merges of its bytes ranked before all others: each character is whole before any learned merge runs,
   as in the Hugging Face model, which starts from characters.
3. **Merges** by rank, lowest first, the same rule as ``tokenizers``' BPE.

A character outside the alphabet is ``<unk>`` in Hugging Face and dropped by llama.cpp (it has no byte
tokens to fall back to): the one known difference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from gguf import TokenType
from gguf.vocab import bytes_to_unicode

from lmforge.core.errors import LmforgeError, did_you_mean
from lmforge.data.chat import stop_ids

# The Hugging Face split regex of each llama.cpp pre-tokenizer lmforge writes (llama-vocab.cpp's table,
# in the original spelling of the models' tokenizer.json).
_LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = {
    _LLAMA3: "llama-bpe",
    _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}"): "qwen2",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+": "gpt-2",
}
# Names a user may force with --pre when the regex is not in the table (text may then split differently).
KNOWN_PRE = ("llama-bpe", "qwen2", "gpt-2", "smollm", "starcoder", "falcon", "default")
# lmforge's first regex: GPT-2's is the nearest (they differ on contractions and on whitespace before a word).
_LEGACY = r" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]|\s+"


@dataclass
class GgufVocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int]  # bos, eos, unk, pad, eot -> id
    chat_template: Optional[str]


def split_regex(tokenizer_json: dict) -> Optional[str]:
    """The regex of the tokenizer's one Split pre-tokenizer (alone or before a regex-free ByteLevel), or None."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    splits = [s for s in steps if s.get("type") == "Split"]
    others = [s for s in steps if s.get("type") != "Split"]
    if len(splits) != 1 or any(s.get("type") != "ByteLevel" or s.get("use_regex", True) for s in others):
        return None
    s = splits[0]
    if s.get("behavior") != "Isolated" or s.get("invert"):
        return None
    return s.get("pattern", {}).get("Regex")


def pre_tokenizer_name(tokenizer_json: dict, forced: Optional[str] = None) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer; an error (naming the nearest) when it has none."""
    if forced is not None:
        if forced not in KNOWN_PRE:
            raise LmforgeError(f"--pre {forced!r}: use one of {', '.join(KNOWN_PRE)}" + did_you_mean(forced, KNOWN_PRE))
        return forced
    regex = split_regex(tokenizer_json)
    if regex in PRE_TOKENIZERS:
        return PRE_TOKENIZERS[regex]
    hint = (
        " (a tokenizer trained by an older lmforge: retrain it, or pass --pre gpt-2, the nearest, which splits "
        "contractions and whitespace before a word differently)"
        if regex == _LEGACY
        else f"; pass --pre with one of {', '.join(KNOWN_PRE)} if one splits text as it does"
    )
    raise LmforgeError(
        f"the tokenizer's pre-tokenizer {json.dumps(tokenizer_json.get('pre_tokenizer'))[:200]} is none that "
        f"llama.cpp knows by name, so llama.cpp would split text differently{hint}"
    )


def _byte_level(tokenizer_json: dict) -> bool:
    """Tokens already in GPT-2's byte alphabet (a ByteLevel pre-tokenizer or decoder)."""
    text = json.dumps([tokenizer_json.get("pre_tokenizer"), tokenizer_json.get("decoder")])
    return '"ByteLevel"' in text


def gguf_vocab(tokenizer, vocab_size: int, pre: Optional[str] = None) -> GgufVocab:
    """Tokens, types, merges and special ids of ``tokenizer`` (a ``PreTrainedTokenizerFast`` with a BPE model),
    padded with unused tokens to the model's ``vocab_size``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise LmforgeError("export gguf needs a fast (tokenizer.json) tokenizer; this one has none")
    tj = json.loads(backend.to_str())
    model = tj["model"]
    if model.get("type") != "BPE":
        raise LmforgeError(
            f"export gguf writes BPE tokenizers; this one is {model.get('type')} "
            "(for SentencePiece Llama models use llama.cpp's convert_hf_to_gguf.py on `lmforge export merge`'s folder)"
        )
    if tj.get("normalizer") is not None or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise LmforgeError("export gguf: the tokenizer normalizes text or marks word pieces; llama.cpp's BPE does not")
    name = pre_tokenizer_name(tj, pre)
    enc = (lambda s: s) if _byte_level(tj) else _byte_encoder()
    added = {t["id"]: t for t in tj.get("added_tokens", [])}
    by_id = {i: t for t, i in model["vocab"].items()}
    by_id.update({i: t["content"] for i, t in added.items()})
    if max(by_id) >= vocab_size:
        raise LmforgeError(f"the tokenizer has ids up to {max(by_id)}, the model only {vocab_size} embeddings")
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:  # embedding rows past the tokenizer
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:  # matched in text as written, before BPE
            tokens.append(by_id[i])
            types.append(TokenType.CONTROL if added[i]["special"] else TokenType.USER_DEFINED)
        else:
            tokens.append(enc(by_id[i]))
            types.append(TokenType.NORMAL)
    merges = [" ".join(map(enc, _pair(m))) for m in model["merges"]]
    if not _byte_level(tj):
        merges = _character_merges([by_id[i] for i in range(vocab_size) if i in by_id and i not in added]) + merges
    return GgufVocab(tokens, types, merges, name, _special_ids(tokenizer), _chat_template(tokenizer))


def _pair(merge) -> tuple[str, str]:
    return tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1))


def _byte_encoder():
    table = bytes_to_unicode()
    return lambda s: "".join(table[b] for b in s.encode("utf-8"))


def _character_merges(tokens: list[str]) -> list[str]:
    """Merges that rebuild each multi-byte character of the alphabet from its bytes, shortest prefix first."""
    table = bytes_to_unicode()
    out: dict[str, None] = {}  # ordered, without repeats (characters share lead bytes)
    for ch in sorted({c for t in tokens for c in t}):
        raw = ch.encode("utf-8")
        for k in range(1, len(raw)):
            out["".join(table[b] for b in raw[:k]) + " " + table[raw[k]]] = None
    return list(out)


def _special_ids(tokenizer) -> dict[str, int]:
    ids = {
        k: getattr(tokenizer, f"{k}_token_id")
        for k in ("bos", "eos", "unk", "pad")
        if getattr(tokenizer, f"{k}_token_id", None) is not None
    }
    turn_end = [i for i in stop_ids(tokenizer) if i != tokenizer.eos_token_id]
    if turn_end:  # a chat template's end of turn: llama.cpp stops there as at EOS
        ids["eot"] = turn_end[0]
    return ids


def _chat_template(tokenizer) -> Optional[str]:
    t = getattr(tokenizer, "chat_template", None)
    return t if isinstance(t, str) else None
