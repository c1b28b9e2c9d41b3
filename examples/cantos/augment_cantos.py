"""More Cantos training rows from the held-out split's training rows only: numbers shifted, numerals swapped.

A row is re-rendered when every number its answer needs is written in its question (Roman or Arabic):
all of those numbers are shifted by one random offset (so "II, ll.4-8" can become "XVII, ll.19-23" with
lines [19..23]), and each numeral may change form (Roman <-> Arabic). Rows whose answer depends on words
("first canto", "Pisan", "the last 5") are copied unchanged. The test rows (``holdout: test``) are never
read; a validation part of the training rows is written apart, unaugmented, for model selection.

    python examples/cantos/augment_cantos.py ../shared/data/cantos_references.jsonl --out runs/cantos-aug
    # writes runs/cantos-aug/{train,variants,val}.jsonl: the training rows, their variants, validation rows
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from cantos_common import MAX_CANTO, NUMBER, fitting, from_roman, to_roman, train_val

from lmforge.core.errors import LmforgeError
from lmforge.data.readers import read_rows


def needed_numbers(refs: list[dict]) -> set[int] | None:
    """Numbers the question must spell for its answer to shift with it; None if the answer can't shift.

    Runs of whole cantos (31, 32, 33, 34) need their ends; a run of lines needs its ends; negative lines
    ("the last 5") are counted from the end and cannot shift.
    """
    cantos: set[int] = set()
    lines: set[int] = set()
    whole = [r["canto"] for r in refs if not r["lines"]]
    for r in refs:
        ls = r["lines"]
        if any(x < 1 for x in ls):
            return None
        if ls:
            cantos.add(r["canto"])
            lines |= {ls[0], ls[-1]} if ls == list(range(ls[0], ls[-1] + 1)) else set(ls)
    for i, c in enumerate(whole):  # ends of runs of consecutive cantos
        if i == 0 or whole[i - 1] != c - 1 or i == len(whole) - 1 or whole[i + 1] != c + 1:
            cantos.add(c)
    # "the first line of Canto I": one written 1 for two numbers, one of them spelled in words
    return None if cantos & lines else cantos | lines


def mentions(text: str, values: set[int]) -> list[tuple[int, int, int, bool]]:
    """``(start, end, value, is_roman)`` of every numeral in ``text`` whose value is in ``values``."""
    out = []
    for m in NUMBER.finditer(text):
        s = m.group(1)
        roman = not s.isdigit()
        v = from_roman(s) if roman else int(s)
        if v is not None and v in values:
            out.append((m.start(1), m.end(1), v, roman))
    return out


def shift_row(row: dict, rng: random.Random, swap: float = 0.25) -> dict | None:
    """One variant of ``row`` with its numbers shifted by a random offset; None if it cannot shift."""
    refs = json.loads(row["output"])["references"]
    need = needed_numbers(refs)
    if not need:
        return None
    found = mentions(row["input"], need)
    if {v for _, _, v, _ in found} != need:
        return None  # the answer needs a number the question spells in words ("first", "Pisan")
    cantos = {r["canto"] for r in refs}
    lo, hi = 1 - min(need), MAX_CANTO - max(cantos)
    offsets = [d for d in range(lo, hi + 1) if d != 0]
    if not offsets:
        return None
    d = rng.choice(offsets)
    lines = {x for r in refs for x in r["lines"]}
    text, last = [], 0
    for start, end, v, roman in found:
        # now and then a canto's numeral changes form; line numbers are only ever written in Arabic
        form = roman != (rng.random() < swap) if roman or v not in lines else False
        text += [row["input"][last:start], to_roman(v + d) if form else str(v + d)]
        last = end
    text.append(row["input"][last:])
    new = [{"canto": r["canto"] + d, "lines": [x + d for x in r["lines"]]} for r in refs]
    return {"input": "".join(text), "output": json.dumps({"references": new})}


def augment(rows: list[dict], copies: int, seed: int, avoid: frozenset[str] = frozenset()) -> list[dict]:
    """Up to ``copies`` distinct shifted variants of each row of ``rows`` that can shift (not the rows).

    No variant repeats a row or one of the ``avoid`` questions (the validation rows').
    """
    rng = random.Random(seed)
    out, seen = [], {r["input"] for r in rows} | set(avoid)
    for row in rows:
        made = 0
        for _ in range(copies * 3):  # a few extra tries: some offsets repeat a variant
            v = shift_row(row, rng)
            if v is None or made >= copies:
                break
            if v["input"] not in seen:
                seen.add(v["input"])
                out.append(v)
                made += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="the Cantos JSONL (its fixed test split is left out)")
    ap.add_argument("--out", required=True, help="folder for train.jsonl, variants.jsonl and val.jsonl")
    ap.add_argument("--copies", type=int, default=20, help="variants per row that can shift")
    ap.add_argument("--val-fraction", type=float, default=0.15, help="training rows kept apart, unaugmented")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--tokenizer", default=None, help="with --max-len: drop variants longer than that in tokens")
    ap.add_argument("--max-len", type=int, default=None, help="the fine-tuning context (a cut answer teaches bad JSON)")
    args = ap.parse_args(argv)
    try:  # a missing or malformed file is one line naming it (file:line), not a traceback
        rows = read_rows(args.data)
    except LmforgeError as e:
        raise SystemExit(f"error: {e}") from None
    train, val = train_val(rows, args.val_fraction, args.seed)
    variants = augment(train, args.copies, args.seed, frozenset(r["input"] for r in val))
    if args.tokenizer and args.max_len:
        variants = fitting(variants, args.tokenizer, args.max_len)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("variants", variants), ("val", val)):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
    print(
        f"{len(train) + len(val)} training rows: {len(val)} validation, {len(train)} training, "
        f"{len(variants)} variants of them -> {out}/{{train,variants,val}}.jsonl"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
