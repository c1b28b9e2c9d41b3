"""Raw text for pretraining: files, folders and hub datasets -> one token stream per split.

Bad input gets one line naming the file: missing, empty, not UTF-8 (with the line of the bad byte).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lmforge.core.config import DataConfig, SourceConfig
from lmforge.core.errors import LmforgeError
from lmforge.core.hub import looks_like_hub_id
from lmforge.data.readers import read_hub, read_text

TEXT_SUFFIXES = {".txt", ".md", ".text", ".raw", ""}


def _hub_texts(src: SourceConfig) -> list[str]:
    """One document per row of a hub dataset's ``text`` column (else its first column)."""
    rows = [r.row for r in read_hub(src.path, src.split, src.subset, src.max_rows)]
    column = "text" if "text" in rows[0] else next(iter(rows[0]))
    return [str(r[column]) for r in rows]


def source_texts(src: SourceConfig) -> list[str]:
    """The documents of one source: a file is one document, a folder one per file, a hub dataset one per row."""
    p = Path(src.path).expanduser()
    if p.is_file():
        docs = [read_text(p)]
    elif p.is_dir():
        files = sorted(
            f for f in p.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES and not f.name.startswith(".")
        )
        if not files:
            raise LmforgeError(f"{p}: folder has no text files (.txt, .md, .raw)")
        docs = [read_text(f) for f in files]
    elif looks_like_hub_id(src.path):
        docs = _hub_texts(src)
    else:
        raise LmforgeError(f"data file not found: {src.path}")
    if not any(d.strip() for d in docs):
        raise LmforgeError(f"{src.path}: the corpus is empty")
    return docs


@dataclass
class TokenStream:
    """A split as one 1-D token tensor, each document as BOS text EOS; chars kept for bits per character."""

    tokens: torch.Tensor  # (N,) int64
    n_chars: int
    n_bytes: int

    @property
    def chars_per_token(self) -> float:
        return self.n_chars / max(len(self.tokens), 1)


def _encode(docs: list[str], tokenizer) -> torch.Tensor:
    ids: list[int] = []
    enc = tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"]  # documents exceed max length
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for d in enc:
        ids.extend(bos)
        ids.extend(d)
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def split_docs(docs: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """Holds out the last ``fraction`` of the characters (the conventional 90/10 split of one file)."""
    if fraction <= 0:
        return docs, []
    joined_len = sum(len(d) for d in docs)
    cut = int(joined_len * (1 - fraction))
    train, val, seen = [], [], 0
    for d in docs:
        if seen + len(d) <= cut:
            train.append(d)
        elif seen >= cut:
            val.append(d)
        else:
            k = cut - seen
            train.append(d[:k])
            val.append(d[k:])
        seen += len(d)
    return train, val


def load_text_splits(data: DataConfig) -> tuple[list[str], list[str]]:
    """Train and validation documents from the config's sources (weights repeat a source's documents)."""
    if not data.train:
        raise LmforgeError("data.train: no training data; set data.train=path/to/corpus.txt")
    train, val = [], []
    for src in data.train:
        docs = source_texts(src)
        tr, va = split_docs(docs, 0.0 if data.val else data.val_fraction)
        reps = max(1, round(src.weight))
        train += tr * reps
        val += va
    for src in data.val:
        val += source_texts(src)
    return train, val


def tokenize_stream(docs: list[str], tokenizer) -> TokenStream:
    text_bytes = sum(len(d.encode("utf-8")) for d in docs)
    return TokenStream(_encode(docs, tokenizer), sum(len(d) for d in docs), text_bytes)
