"""Synthetic Cantos rows: the citation forms of the training rows, recombined with fresh numbers and prose.

The training rows show how scholars cite the Cantos: "II, ll.4-8", "XX:1-20", "IX, lines 1 to 15",
"Canto LXXXIII", "(CXVI/816)", "Cantos LXXII and LXXIII", "cantos 31–34, 62–71", "Canto XVIII (δ = 72..87,
ε = 88..102)", "the penultimate line of XI", "the last 5 of Pound's first canto", "Every Pisan Canto",
"the first Canto of Thrones". Shifting a row's numbers (augment_cantos.py) keeps each row's
prose, so a small model learns the rows' surroundings instead of reading numerals. Here every form is a
generator: canto numbers drawn anew (Roman or Arabic), line ranges of any length, the range separators
the rows use (-, –, .., "to"), one to three citations per row, set inside sentences of other prose (the
training rows without a reference and Wikipedia sentences, which bring their own distractors: years,
page numbers, Roman numerals of kings and wars). Rows with no citation answer ``{"references": []}``.
The test rows are never read; the named sections are the ones the training rows define.

    python examples/cantos/synth_cantos.py ../shared/data/cantos_references.jsonl \
        --prose ../shared/data/wikipedia_30_articles.txt --rows 40000 --out runs/cantos-synth
    # writes runs/cantos-synth/synth.jsonl (rows) and synth.txt (the same rows in the prompt template, as text);
    # with --tokenizer runs/base/tokenizer --max-len 256, the same rows less those that would be cut
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from cantos_common import MAX_CANTO, TEMPLATE, fitting, to_roman, train_val

from lmforge.core.errors import LmforgeError
from lmforge.data.readers import read_rows, read_text

# named groups of cantos, as the training rows define them ("Every Pisan Canto", "all of Thrones", ...)
SECTIONS = [
    ("Pisan", 74, 84),
    ("Rock-Drill", 85, 95),
    ("Thrones", 96, 109),
    ("Drafts and Fragments", 110, 117),
    ("Malatesta", 8, 11),
    ("China", 52, 61),
    ("Italian", 72, 73),
]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]
WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
MAX_LINE = 220
MAX_LINES_PER_ROW = 40  # an answer of 40 line numbers is ~170 tokens: the row still fits a 256 context
MAX_WHOLE_PER_ROW = 14


def whole(c: int) -> dict:
    return {"canto": c, "lines": []}


class Citations:
    """Citation generators; each returns ``(text, references)`` for one citation."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def numeral(self, n: int, roman: float = 0.6) -> str:
        return to_roman(n) if self.rng.random() < roman else str(n)

    def canto(self) -> int:
        return self.rng.randint(1, MAX_CANTO)

    def sep(self) -> str:
        return self.rng.choice(["-", "-", "–", ".."])

    def count(self, k: int) -> str:
        return WORDS[k - 1] if k <= 10 and self.rng.random() < 0.4 else str(k)

    def line(self) -> int:
        """A line number: half of them among a canto's first 30 lines, as the rows cite them most."""
        return self.rng.randint(1, 30 if self.rng.random() < 0.5 else MAX_LINE - 2)

    def span(self, longest: int = 30) -> tuple[int, int]:
        a = self.line()
        return a, min(MAX_LINE, a + self.rng.randint(1, longest - 1))

    def one_canto(self):
        c = self.canto()
        n = self.numeral(c)
        page = self.rng.randint(2, 820)
        text = self.rng.choice(
            [
                f"Canto {n}",
                f"canto {n}",
                f"Canto {n}",
                f"({n}/{page})",
                f"Canto {n}/{page}",
                f"{to_roman(c)} at p. {page}",
                f"(Canto {n})",
                f"{to_roman(c)}",
            ]
        )
        return text, [whole(c)]

    def some_cantos(self):
        cs = self.rng.sample(range(1, MAX_CANTO + 1), self.rng.randint(2, 4))
        ns = [self.numeral(c) for c in cs]
        head = self.rng.choice(["Cantos ", "cantos ", "Cantos ", "(", ""])
        body = ", ".join(ns[:-1]) + self.rng.choice([" and ", " and ", ", "]) + ns[-1]
        return head + body + (")" if head == "(" else ""), [whole(c) for c in cs]

    def run_of_cantos(self):
        a = self.rng.randint(1, MAX_CANTO - 1)
        b = min(MAX_CANTO, a + self.rng.randint(1, 11))
        roman = self.rng.random() < 0.6
        na, nb = (to_roman(a), to_roman(b)) if roman else (str(a), str(b))
        dash = self.rng.choice(["–", "-", "–"])
        text = self.rng.choice(
            [
                f"Cantos {na}{dash}{nb}",
                f"cantos {na}{dash}{nb}",
                f"({na}{dash}{nb})",
                f"Cantos {na}{dash}{nb}",
                f"the Cantos {na}{dash}{nb}",
            ]
        )
        return text, [whole(c) for c in range(a, b + 1)]

    def line_range(self):
        c = self.canto()
        a, b = self.span()
        r, n, s = to_roman(c), self.numeral(c), self.sep()
        text = self.rng.choice(
            [
                f"{r}:{a}{s}{b}",
                f"{r}:ll.{a}{s}{b}",
                f"{n}, ll.{a}{s}{b}",
                f"{n}, lines {a} to {b}",
                f"Canto {n}, lines {a}{s}{b}",
                f"lines {a}{s}{b} of Canto {n}",
                f"Canto {n}: {a}{s}{b}",
                f"ll.{a}{s}{b} of {r}",
                f"Canto {n}, ll. {a}{s}{b}",
            ]
        )
        return text, [{"canto": c, "lines": list(range(a, b + 1))}]

    def two_ranges(self):
        c = self.canto()
        a, b = self.span(20)
        d = min(MAX_LINE + 20, b + self.rng.randint(1, 19))
        n, s = self.numeral(c, 0.8), self.sep()
        g1, g2 = self.rng.choice([("δ", "ε"), ("α", "β"), ("a", "b")])
        text = self.rng.choice(
            [
                f"Canto {n}: {g1} = {a}{s}{b}, {g2} = {b + 1}{s}{d}",
                f"Canto {n} ({g1} = {a}{s}{b}, {g2} = {b + 1}{s}{d})",
                None,
            ]
        )  # None: the second range as "the following N lines"
        if text is None:
            k = d - b
            text = f"{n}:ll.{a}{s}{b}, but in the following {self.count(k) if k <= 10 else k} lines"
        return text, [{"canto": c, "lines": list(range(a, b + 1))}, {"canto": c, "lines": list(range(b + 1, d + 1))}]

    def single_lines(self):
        c = self.canto()
        n = self.numeral(c)
        a = self.line()
        if self.rng.random() < 0.5:
            text = self.rng.choice(
                [f"line {a} of Canto {n}", f"{to_roman(c)}, l.{a}", f"Canto {n}, line {a}", f"(Canto {n}) Around l.{a}"]
            )
            return text, [{"canto": c, "lines": [a]}]
        text = self.rng.choice([f"({n}) Lines {a} and {a + 1}", f"lines {a} and {a + 1} of Canto {n}"])
        return text, [{"canto": c, "lines": [a, a + 1]}]

    def ends(self):
        c = self.canto()
        n = self.numeral(c)
        if self.rng.random() < 0.15 and c <= 10:
            n = f"Pound’s {ORDINALS[c - 1]} canto"
        else:
            n = self.rng.choice([f"Canto {n}", f"canto {n}", f"{to_roman(c)}"])
        k, j = self.rng.randint(2, 8), self.rng.randint(2, 8)
        choice = self.rng.randrange(6)
        if choice == 0:
            i = self.rng.randint(1, 3)
            return f"the {ORDINALS[i - 1]} line of {n}", [{"canto": c, "lines": [i]}]
        if choice == 1:
            return self.rng.choice([f"the last line of {n}", f"the final line of {n}"]), [{"canto": c, "lines": [-1]}]
        if choice == 2:
            return f"the penultimate line of {n}", [{"canto": c, "lines": [-2]}]
        if choice == 3:
            return f"the first {self.count(k)} lines of {n}", [{"canto": c, "lines": list(range(1, k + 1))}]
        if choice == 4:
            return (
                self.rng.choice([f"the last {self.count(k)} lines of {n}", f"the last {self.count(k)} of {n}"]),
                [{"canto": c, "lines": list(range(-k, 0))}],
            )
        return (
            f"the first {self.count(k)} and last {self.count(j)} lines of {n}",
            [{"canto": c, "lines": list(range(1, k + 1))}, {"canto": c, "lines": list(range(-j, 0))}],
        )

    def section(self):
        name, lo, hi = self.rng.choice(SECTIONS)
        choice = self.rng.randrange(5)
        if choice == 0:
            text = self.rng.choice(
                [f"Every {name} Canto", f"all of {name}", f"The entirety of {name}", f"the {name} Cantos"]
            )
            if name in ("Rock-Drill", "Thrones", "Drafts and Fragments") and "Cantos" in text:
                text = f"{name} de los Cantares" if name != "Drafts and Fragments" else "Drafts and Fragments"
            return text, [whole(c) for c in range(lo, hi + 1)]
        if choice == 1:
            dash = self.rng.choice(["–", "-"])
            return f"the {name} Cantos ({to_roman(lo)}{dash}{to_roman(hi)})", [whole(c) for c in range(lo, hi + 1)]
        if choice == 2:
            i = self.rng.randint(1, min(3, hi - lo + 1))
            return f"the {ORDINALS[i - 1]} Canto of {name}", [whole(lo + i - 1)]
        if choice == 3:
            return self.rng.choice([f"The last {name} Canto", f"the last Canto of {name}"]), [whole(hi)]
        return f"the second from last Canto of {name}", [whole(hi - 1)]

    def draw(self):
        kinds = [
            (self.one_canto, 5),
            (self.some_cantos, 3),
            (self.run_of_cantos, 3),
            (self.line_range, 5),
            (self.two_ranges, 2),
            (self.single_lines, 2),
            (self.ends, 4),
            (self.section, 2),
        ]
        f = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        return f()


def prose_sentences(texts: list[str], lo: int = 30, hi: int = 220) -> list[str]:
    """Sentences of ``lo``..``hi`` characters from ``texts`` that do not mention a canto."""
    out = []
    for t in texts:
        for s in re.split(r"(?<=[.!?])\s+", t):
            s = s.strip()
            if lo <= len(s) <= hi and "canto" not in s.lower():
                out.append(s)
    return out


def size(refs: list[dict]) -> tuple[int, int]:
    return sum(len(r["lines"]) for r in refs), sum(1 for r in refs if not r["lines"])


def distractor(rng: random.Random) -> str:
    """Numbers that are not cantos, as the training rows have them: years, pages, chapters, Canton."""
    year, page = rng.randint(1800, 2020), rng.randint(1, 900)
    return rng.choice(
        [
            f" ({year}: {page})",
            f" ({year}: {page}, {page + rng.randint(2, 40)})",
            f" in {year}",
            f" (Chapter {rng.randint(1, 20)})",
            f" (p. {page})",
            " in Canton",
            f" ({year})",
            f" (Book {to_roman(rng.randint(1, 24))})",
        ]
    )


def make_row(cit: Citations, prose: list[str], none: float = 0.2) -> dict:
    """One row: prose alone (no reference), or one to three citations, bare or set inside a sentence."""
    rng = cit.rng
    s = rng.choice(prose)
    if rng.random() < 0.3:
        s = s.rstrip(".") + distractor(rng) + "."
    if rng.random() < none:
        return {"input": s, "output": json.dumps({"references": []})}
    texts, refs = [], []
    for _ in range(rng.choices([1, 2, 3], [70, 20, 10])[0]):
        t, r = cit.draw()
        lines, wholes = size(refs + r)
        if texts and (lines > MAX_LINES_PER_ROW or wholes > MAX_WHOLE_PER_ROW):
            break
        texts.append(t)
        refs += r
    lines, wholes = size(refs)
    if lines > MAX_LINES_PER_ROW or wholes > MAX_WHOLE_PER_ROW:
        return make_row(cit, prose, none)
    joined = texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + rng.choice([" and ", ", ", "; "]) + texts[-1]
    r = rng.random()
    if r < 0.25:
        text = joined
    elif r < 0.35 and len(texts) == 1:
        text = rng.choice([f"What is {joined}?", f"What are {joined}?", f"Where is {joined}?"])
    elif r < 0.6:
        text = f"{s.rstrip('.')} ({joined})."
    elif r < 0.8:
        words = s.split()
        cut = rng.randint(1, max(1, len(words) - 1))
        text = " ".join(words[:cut]) + f" in {joined}" + ("" if cut >= len(words) else " " + " ".join(words[cut:]))
    else:
        text = f"In {joined}, {s[0].lower() + s[1:]}"
    return {"input": text, "output": json.dumps({"references": refs})}


def synth_rows(prose: list[str], n: int, seed: int = 0, avoid: frozenset[str] = frozenset()) -> list[dict]:
    """``n`` distinct synthetic rows (none equal to an ``avoid`` question)."""
    cit = Citations(random.Random(seed))
    out, seen = [], set(avoid)
    while len(out) < n:
        row = make_row(cit, prose)
        if row["input"] not in seen:
            seen.add(row["input"])
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="the Cantos JSONL: its training rows without a reference give prose")
    ap.add_argument("--prose", nargs="*", default=[], help="more text files to draw sentences from")
    ap.add_argument("--rows", type=int, default=40000)
    ap.add_argument("--out", required=True, help="folder for synth.jsonl and synth.txt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer", default=None, help="with --max-len: drop rows longer than that in tokens")
    ap.add_argument("--max-len", type=int, default=None, help="the fine-tuning context (a cut answer teaches bad JSON)")
    args = ap.parse_args(argv)
    try:  # a missing or malformed file is one line naming it, not a traceback
        rows = read_rows(args.data)
        missing = [p for p in args.prose if not Path(p).is_file()]
        if missing:
            raise LmforgeError(f"file not found: {missing[0]}")
        texts = [read_text(Path(p)) for p in args.prose]
    except LmforgeError as e:
        raise SystemExit(f"error: {e}") from None
    train, _ = train_val(rows)  # neither the test rows nor the validation rows augment_cantos.py sets apart
    empty = [r["input"] for r in train if json.loads(r["output"])["references"] == []]
    prose = prose_sentences(empty + texts)
    if not prose:
        raise SystemExit("error: no prose sentences to set citations in")
    synth = synth_rows(prose, args.rows, args.seed, frozenset(r["input"] for r in rows))
    if args.tokenizer and args.max_len:
        synth = fitting(synth, args.tokenizer, args.max_len)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "synth.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in synth)
    (out / "synth.txt").write_text("\n\n".join(TEMPLATE.format(**r) for r in synth) + "\n", encoding="utf-8")
    print(f"{len(synth)} synthetic rows from {len(prose)} prose sentences -> {out}/synth.{{jsonl,txt}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
