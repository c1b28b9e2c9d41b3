"""Measures of generated verse for ``lmforge eval``, registered as metrics: the rhyme rate, distinct-n and the
mean syllables per line. Each scores one poem (``fn``) and a whole set of them (``corpus``, what the table
shows): the rhyming pairs and the lines pooled over the poems, the n-grams counted across all of them (diversity
across samples, as the RL logs count it). They measure the output alone, so a task's rows may be prompts only:

    # verse.yaml                     lmforge eval runs/poet --task verse.yaml --max-new-tokens 96
    data: prompts.jsonl              # {"input": "The sea at night"} a line
    metrics: [rhyme_rate_en, distinct_1, distinct_2, syllables_per_line_en]
    metric_args: {scheme: ABAB}      # the rhyme scheme: AABB (default), ABAB, ABBA or any

Every line of a completion counts (the task's ``stop`` strings cut it first); the rhyme of two lines is
``rewards.verse``'s: pronunciations, not spellings.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from lmforge.core.registry import metric
from lmforge.rewards.phonetics import syllables
from lmforge.rewards.verse import rhyme_counts, rhyme_rate


def ngram_counts(texts: list[str], n: int) -> Counter:
    """The word n-grams of the texts (words split at blanks; an n-gram never spans two texts)."""
    grams: Counter = Counter()
    for t in texts:
        w = t.split()
        grams.update(tuple(w[i : i + n]) for i in range(len(w) - n + 1))
    return grams


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of the texts (0 when they have none)."""
    grams = ngram_counts(texts, n)
    return len(grams) / max(sum(grams.values()), 1)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.split("\n") if ln.strip()]


def syllables_per_line(texts: list[str], lang: str) -> float:
    """Syllables over the non-blank lines of all the texts, pooled (NaN without any line)."""
    lines = [ln for t in texts for ln in _lines(t)]
    return sum(syllables(ln, lang) for ln in lines) / len(lines) if lines else float("nan")


def _register_distinct(n: int) -> None:
    def one(prediction: str, reference: str = "", **_: Any) -> float:
        return distinct_n([prediction], n)

    def corpus(predictions: list[str], references: list[str], **_: Any) -> float:
        return distinct_n(predictions, n)

    metric(f"distinct_{n}", corpus=corpus, needs_reference=False)(one)


def _register_verse(lang: str) -> None:
    def rhyme(prediction: str, reference: str = "", *, scheme: str = "AABB", eye_rhymes: bool = True, **_) -> float:
        hit, asked = rhyme_counts(prediction, lang, scheme, eye_rhymes=eye_rhymes)
        return hit / asked if asked else 0.0

    def rhyme_pooled(predictions: list[str], references: list[str], *, scheme="AABB", eye_rhymes=True, **_) -> float:
        return rhyme_rate(predictions, lang, scheme, eye_rhymes)

    def per_line(prediction: str, reference: str = "", **_: Any) -> float:
        return syllables_per_line([prediction], lang)

    def per_line_pooled(predictions: list[str], references: list[str], **_: Any) -> float:
        return syllables_per_line(predictions, lang)

    metric(f"rhyme_rate_{lang}", corpus=rhyme_pooled, needs_reference=False)(rhyme)
    metric(f"syllables_per_line_{lang}", higher_is_better=None, corpus=per_line_pooled, needs_reference=False)(per_line)


for _n in (1, 2):
    _register_distinct(_n)
for _lang in ("fr", "en"):
    _register_verse(_lang)
