"""A corpus of lines that can only be predicted by copying: random words and numerals, each line written twice.

Mixed into a small base's pretraining, it makes copying from the context (induction heads) form sooner; the
Cantos fine-tunes need that to carry a question's numbers into the answer (docs/results.md, "Cantos").

    python examples/cantos/make_repeats.py ../shared/data/wikipedia_30_articles.txt --out repeats.txt --chars 1500000
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from cantos_common import to_roman  # the Cantos variants spell numerals the same way

PUNCTUATION = [",", ".", "-", ":", "(", ")"]


def repeated_lines(words: list[str], chars: int, seed: int = 0) -> str:
    """Blocks of ``line\\nline\\n\\n`` until about ``chars`` characters; a line is 5-40 random items: words
    (65%), Arabic numbers 1-200 (20%), Roman numerals 1-120 (10%), punctuation (5%)."""
    rng = random.Random(seed)

    def item() -> str:
        r = rng.random()
        if r < 0.2:
            return str(rng.randint(1, 200))
        if r < 0.3:
            return to_roman(rng.randint(1, 120))
        if r < 0.35:
            return rng.choice(PUNCTUATION)
        return rng.choice(words)

    out, n = [], 0
    while n < chars:
        line = " ".join(item() for _ in range(rng.randint(5, 40)))
        out.append(f"{line}\n{line}\n\n")
        n += 2 * len(line) + 3
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("words", help="a text file whose distinct words are drawn from")
    ap.add_argument("--out", required=True)
    ap.add_argument("--chars", type=int, default=1_500_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    words = list(dict.fromkeys(re.findall(r"[A-Za-z]+", Path(args.words).read_text(encoding="utf-8"))))
    if not words:
        raise SystemExit(f"{args.words}: no words found")
    Path(args.out).write_text(repeated_lines(words, args.chars, args.seed), encoding="utf-8")
    print(f"wrote {args.out}: {args.chars:,} characters of repeated lines from {len(words):,} words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
