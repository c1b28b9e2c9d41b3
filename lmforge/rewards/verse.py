"""Verse measures and rewards: rhyme as a rhyme scheme asks it, and metre.

A poem is cut into stanzas at blank lines, each stanza into quatrains (groups of four lines). A scheme
names the line pairs that should rhyme in a quatrain: AABB (1-2, 3-4), ABAB (1-3, 2-4), ABBA (1-4, 2-3);
``any`` asks each line to rhyme with some other line of its quatrain. The rhyme rate of a text is the
share of those pairs (lines, for ``any``) that rhyme.
"""

from __future__ import annotations

from typing import Any, Optional

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import REWARDS
from lmforge.rewards.combine import completion_text
from lmforge.rewards.lexicon import lexicon, words
from lmforge.rewards.phonetics import assonates, last_word, rhymes, syllables

SCHEMES = {"AABB": ((0, 1), (2, 3)), "ABAB": ((0, 2), (1, 3)), "ABBA": ((0, 3), (1, 2))}


def quatrains(text: str) -> list[list[str]]:
    """Groups of up to four consecutive non-blank lines, never across a blank line."""
    out: list[list[str]] = []
    for stanza in text.replace("\r\n", "\n").split("\n\n"):
        lines = [ln.strip() for ln in stanza.split("\n") if ln.strip()]
        out += [lines[i : i + 4] for i in range(0, len(lines), 4)]
    return out


def scheme_pairs(n_lines: int, scheme: str) -> list[tuple[int, int]]:
    """The pairs a scheme asks to rhyme among the first ``n_lines`` lines of a quatrain."""
    key = scheme.upper()
    if key == "ANY":
        return [(i, j) for i in range(n_lines) for j in range(i + 1, n_lines)]
    if key not in SCHEMES:
        raise LmforgeError(f"unknown rhyme scheme {scheme!r}; use AABB, ABAB, ABBA or any")
    return [(i, j) for i, j in SCHEMES[key] if j < n_lines]


def rhyme_counts(
    text: str,
    lang: str,
    scheme: str = "AABB",
    assonance: float = 0.0,
    eye_rhymes: bool = True,
    known: Optional[frozenset] = None,
) -> tuple[float, int]:
    """(rhyming, asked): pairs the scheme asks for that rhyme, and pairs it asks for; for ``any``, lines that
    rhyme with another line of their quatrain, and lines in quatrains of at least two lines. With ``assonance``
    a pair that does not rhyme but shares the rhyme's vowel counts for that much (a denser reward);
    ``eye_rhymes`` (English) counts the eye rhymes of English verse (love / move; ``phonetics.rhymes``).
    With ``known`` (a set of words) a pair counts only when both its end words are in it: a rhyme between
    made-up words ("regareté / regardassé") earns nothing."""
    hit, asked = 0.0, 0

    def real(word: str) -> bool:
        parts = words(word)
        return bool(parts) and all(p in known for p in parts)

    def tie(a: str, b: str) -> float:
        if known is not None and not (real(a) and real(b)):
            return 0.0
        if rhymes(a, b, lang, eye=eye_rhymes):
            return 1.0
        return assonance if assonance and assonates(a, b, lang) else 0.0

    for q in quatrains(text):
        ends = [last_word(line) for line in q]
        if scheme.upper() == "ANY":
            if len(ends) < 2:
                continue
            asked += len(ends)
            n = len(ends)
            hit += sum(max(tie(ends[i], ends[j]) for j in range(n) if j != i) for i in range(n))
            continue
        for i, j in scheme_pairs(len(ends), scheme):
            asked += 1
            hit += tie(ends[i], ends[j])
    return hit, asked


def rhyme_rate(texts: list[str], lang: str, scheme: str = "AABB", eye_rhymes: bool = True) -> float:
    """Pooled over texts: rhyming pairs / asked pairs (0 when nothing is asked)."""
    hit = asked = 0
    for t in texts:
        h, a = rhyme_counts(t, lang, scheme, eye_rhymes=eye_rhymes)
        hit, asked = hit + h, asked + a
    return hit / asked if asked else 0.0


def complete_lines(text: str) -> str:
    """The text up to its last newline: a last line cut by the token budget has no end word yet."""
    return text if text.endswith("\n") else text[: text.rfind("\n") + 1]


def _rhyme(
    completions: list,
    lang: str,
    scheme: str,
    assonance: float,
    eye_rhymes: bool = True,
    known_words: Optional[str] = None,
    min_count: int = 1,
) -> list[float]:
    known = lexicon(str(known_words), int(min_count)) if known_words else None
    out = []
    for c in completions:
        hit, asked = rhyme_counts(complete_lines(completion_text(c)), lang, scheme, assonance, eye_rhymes, known)
        out.append(hit / asked if asked else 0.0)
    return out


@REWARDS.register("rhyme_fr")
def rhyme_fr(
    prompts: list,
    completions: list,
    scheme: str = "AABB",
    assonance: float = 0.0,
    known_words: Optional[str] = None,
    min_count: int = 1,
    **columns: Any,
) -> list[float]:
    """Share of the pairs the scheme asks for whose French line ends rhyme (espeak-ng pronunciations); a last
    line without its newline (cut by the token budget) is not counted. ``known_words: corpus.txt`` pays a pair
    only when both end words occur (``min_count`` times) in that corpus or word list."""
    return _rhyme(completions, "fr", scheme, assonance, known_words=known_words, min_count=min_count)


@REWARDS.register("rhyme_en")
def rhyme_en(
    prompts: list,
    completions: list,
    scheme: str = "AABB",
    assonance: float = 0.0,
    eye_rhymes: bool = True,
    known_words: Optional[str] = None,
    min_count: int = 1,
    **columns: Any,
) -> list[float]:
    """Share of the pairs the scheme asks for whose English line ends rhyme (CMUdict, espeak-ng fallback);
    ``eye_rhymes: false`` judges by sound alone (no love / move); ``known_words`` (a corpus, a word list or
    ``demo``) pays a pair only when both its end words are in it."""
    return _rhyme(completions, "en", scheme, assonance, eye_rhymes, known_words, min_count)


@REWARDS.register("syllables")
def syllables_reward(
    prompts: list, completions: list, target: int = 12, lang: str = "fr", tolerance: int = 0, **columns: Any
) -> list[float]:
    """Share of a completion's lines with ``target`` syllables (within ``tolerance``): 12 for the alexandrine."""
    out = []
    for c in completions:
        lines = [ln for ln in completion_text(c).split("\n") if ln.strip()]
        ok = sum(abs(syllables(ln, lang) - target) <= tolerance for ln in lines)
        out.append(ok / len(lines) if lines else 0.0)
    return out
