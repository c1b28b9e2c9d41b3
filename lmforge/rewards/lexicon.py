"""Known words: the share of a completion's words that a corpus or word list contains.

A rhyme reward invites a small poet to invent words whose endings rhyme ("eternality", "regareté"): the
cheapest way to end two lines alike is to make the endings up. The base model's perplexity does not always
see it (a made-up word repeated is predictable), nor does distinct-n. This measure and reward does: a word is
known when the source (the corpus the poet was trained on, say) holds it. Words are runs of letters, accents
included, lower-cased; an apostrophe or hyphen splits them (``l'homme``: ``l``, ``homme``).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import REWARDS
from lmforge.rewards.combine import completion_text

WORD = re.compile(r"[^\W\d_]+")


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased."""
    return WORD.findall(text.lower())


@lru_cache(maxsize=8)
def lexicon(source: str, min_count: int = 1) -> frozenset:
    """The words that occur at least ``min_count`` times in ``source``: a text file (a corpus or one word a
    line), or ``demo`` for the embedded verse corpus of ``lmforge demo``."""
    if source == "demo":
        from lmforge.data.corpus import load_default_corpus

        text = load_default_corpus()
    else:
        path = Path(source)
        if not path.is_file():
            raise LmforgeError(f"known_words: source file not found: {path} (a corpus, a word list, or demo)")
        text = path.read_text(encoding="utf-8", errors="replace")
    counts = Counter(words(text))
    out = frozenset(w for w, c in counts.items() if c >= min_count)
    if not out:
        raise LmforgeError(f"known_words: no words in {source} (min_count {min_count})")
    return out


def known_share(text: str, known: frozenset) -> float:
    """The share of the words of ``text`` that ``known`` holds (0 for a text without words)."""
    found = words(text)
    return sum(w in known for w in found) / len(found) if found else 0.0


@REWARDS.register("known_words")
def known_words(
    prompts: list, completions: list, source: Optional[str] = None, min_count: int = 1, **columns: Any
) -> list[float]:
    """The share of each completion's words found in ``source`` (``args: {source: corpus.txt}``; ``demo``:
    the embedded corpus); ``min_count`` > 1 ignores the source's rare words (typos, names)."""
    if not source:
        raise LmforgeError("rewards: known_words needs args.source (a corpus or word list file, or demo)")
    known = lexicon(str(source), int(min_count))
    return [known_share(completion_text(c), known) for c in completions]
