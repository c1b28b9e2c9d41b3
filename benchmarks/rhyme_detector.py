"""Is the rhyme detector right on real verse? Before anything is trained on it.

French: 4-line stanzas of ../shared/data/french_poetry.txt (Hugo, Baudelaire, Verlaine...). English: 4-line
windows of the poems of the embedded corpus. A quatrain's rhyme scheme is read from *spelling*, independently
of the detector: the one scheme (AABB, ABAB or ABBA) whose two pairs of end words share their last two letters
(accents and a final s/x dropped). On those pairs the detector (pronunciation) should find rhyme; on pairs of
line ends drawn from different stanzas (shuffled) it should find rhyme about as often as two random end words
share a rhyme sound. Also: the pairs of quatrains whose scheme one pair's spelling fixes while the other pair is
spelled differently (where pronunciation, not spelling, decides), and the corpus's own AABB / any-pair rates.

    python benchmarks/rhyme_detector.py            # table, JSON in benchmarks/out/rhyme_detector.json
"""

from __future__ import annotations

import json
import random
import sys
import time
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine, shared_data  # noqa: E402

from lmforge.data.corpus import load_default_corpus  # noqa: E402
from lmforge.rewards.phonetics import last_word, phonemes, rhyme_keys, rhymes  # noqa: E402
from lmforge.rewards.verse import SCHEMES, rhyme_rate  # noqa: E402


def spelling(word: str) -> str:
    """The last two letters, accents and a final s/x removed: the eye's rhyme."""
    w = "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))
    w = w.rstrip("sx") if len(w) > 2 else w
    return w[-2:]


def quatrains_fr(text: str) -> list[list[str]]:
    out = []
    for block in text.split("\n\n"):
        lines = [ln.strip() for ln in block.split("\n") if ln.strip()]
        if len(lines) == 4 and all(15 <= len(ln) <= 80 and not ln.isupper() for ln in lines):
            out.append(lines)
    return out


def quatrains_en(text: str) -> list[list[str]]:
    out = []
    for poem in text.split("\n\n"):
        lines = [ln.strip() for ln in poem.split("\n") if ln.strip()]
        out += [lines[i : i + 4] for i in range(0, len(lines) - 3, 4)]
    return [q for q in out if all(15 <= len(ln) <= 80 for ln in q)]


def spelled_scheme(ends: list[str]) -> tuple[str | None, str | None]:
    """(the one scheme both of whose pairs match in spelling, or None; the one scheme with exactly one pair
    matching while no scheme matches fully, or None)."""
    full, half = [], []
    for name, pairs in SCHEMES.items():
        ok = [spelling(ends[i]) == spelling(ends[j]) and ends[i] != ends[j] for i, j in pairs]
        if all(ok):
            full.append(name)
        elif any(ok):
            half.append(name)
    return (full[0] if len(full) == 1 else None), (half[0] if not full and len(half) == 1 else None)


def measure(quatrains: list[list[str]], lang: str, seed: int = 0, eye: bool = False) -> dict:
    rng = random.Random(seed)
    found = asked = hard_found = hard_asked = 0
    pairs_seen, hard_seen = [], []
    for q in quatrains:
        ends = [last_word(line) for line in q]
        scheme, partial = spelled_scheme(ends)
        if scheme:
            for i, j in SCHEMES[scheme]:
                hit = rhymes(ends[i], ends[j], lang, eye)
                found, asked = found + hit, asked + 1
                pairs_seen.append((ends[i], ends[j], hit))
        elif partial:
            for i, j in SCHEMES[partial]:
                if spelling(ends[i]) != spelling(ends[j]):
                    hit = rhymes(ends[i], ends[j], lang, eye)
                    hard_found, hard_asked = hard_found + hit, hard_asked + 1
                    hard_seen.append((ends[i], ends[j], hit))
    # shuffled: each end word against an end word of another quatrain
    ends_all = [(k, last_word(line)) for k, q in enumerate(quatrains) for line in q]
    shuffled = hits = 0
    for _ in range(20000):
        (ka, a), (kb, b) = rng.choice(ends_all), rng.choice(ends_all)
        if ka != kb and a and b and a != b:
            shuffled += 1
            hits += rhymes(a, b, lang, eye)
    texts = ["\n".join(q) for q in quatrains]
    return {
        "quatrains": len(quatrains),
        "spelled_pairs": asked,
        "rhyme_found_in_spelled_pairs": found / max(asked, 1),
        "pronunciation_only_pairs": hard_asked,
        "rhyme_found_in_pronunciation_only_pairs": hard_found / max(hard_asked, 1),
        "shuffled_pairs": shuffled,
        "rhyme_found_in_shuffled_pairs": hits / max(shuffled, 1),
        "corpus_aabb_rate": rhyme_rate(texts, lang, "AABB", eye),
        "corpus_abab_rate": rhyme_rate(texts, lang, "ABAB", eye),
        "corpus_any_pair_rate": rhyme_rate(texts, lang, "any", eye),
        "_pairs": pairs_seen,
        "_hard_pairs": hard_seen,
        "_shuffled_sample": [(a, b) for (_, a), (_, b) in (rng.sample(ends_all, 2) for _ in range(200))],
    }


def main() -> None:
    t0 = time.time()
    french = quatrains_fr(shared_data("french_poetry.txt").read_text(encoding="utf-8"))
    english = quatrains_en(load_default_corpus())
    # English twice: by sound alone, and with the eye rhymes of English verse (the rewards' default)
    results = {"fr": measure(french, "fr"), "en": measure(english, "en"), "en_eye": measure(english, "en", eye=True)}
    rng = random.Random(1)
    fr = results["fr"]
    # twenty French pairs to check by hand: 8 of spelled schemes, 6 pronunciation-only, 6 shuffled
    shuffled = [(a, b, rhymes(a, b, "fr")) for a, b in fr["_shuffled_sample"][:6]]
    check = rng.sample(fr["_pairs"], 8) + rng.sample(fr["_hard_pairs"], 6) + shuffled
    hand = [
        {"a": a, "b": b, "detector": bool(hit), "key_a": rhyme_keys(a, "fr")[0], "key_b": rhyme_keys(b, "fr")[0],
         "ipa_a": phonemes(a, "fr"), "ipa_b": phonemes(b, "fr")}
        for a, b, hit in check
    ]  # fmt: skip
    for r in results.values():
        r.pop("_pairs"), r.pop("_hard_pairs"), r.pop("_shuffled_sample")
    print(f"{'':<42}{'French':>10}{'English':>10}{'En (eye)':>10}")
    for key in results["fr"]:
        vals = [results[lang][key] for lang in ("fr", "en", "en_eye")]
        print(f"{key:<42}" + "".join(f"{v:>10.3f}" if isinstance(v, float) else f"{v:>10}" for v in vals))
    print("\nhand check (French):")
    for h in hand:
        print(f"  {h['a']:>14} / {h['b']:<14} {h['ipa_a']:>12} / {h['ipa_b']:<12} detector: {h['detector']}")
    OUT.mkdir(parents=True, exist_ok=True)
    out = {"results": results, "hand_check_fr": hand, "seconds": time.time() - t0, "machine": machine()}
    (OUT / "rhyme_detector.json").write_text(json.dumps(out, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"\nwrote {OUT / 'rhyme_detector.json'} in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
