"""What the Cantos scripts share: the prompt, Roman numerals, the rows they may read, the rows that fit.

A plain module beside the scripts: ``python examples/cantos/<script>.py`` puts this folder first on
``sys.path``, so the scripts import it by name.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import yaml

from lmforge.data.split import split_rows

TASK = Path(__file__).resolve().parent / "task.yaml"
# the task's prompt, so that the rows the scripts write are read the way `lmforge eval --task` asks them
TEMPLATE: str = yaml.safe_load(TASK.read_text(encoding="utf-8"))["template"]
MAX_CANTO = 120

_ROMAN = [(100, "C"), (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
# a number as a word of its own: Roman numerals (upper case) or Arabic digits
NUMBER = re.compile(r"(?<![A-Za-z0-9])([IVXLC]+|\d+)(?![A-Za-z0-9])")


def to_roman(n: int) -> str:
    """1..399 as a Roman numeral (4 -> IV, 83 -> LXXXIII)."""
    out = []
    for value, sym in _ROMAN:
        while n >= value:
            out.append(sym)
            n -= value
    return "".join(out)


def from_roman(s: str) -> int | None:
    """The value of a canonical Roman numeral, None for anything else ("IIII", "IC")."""
    vals = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}
    total = sum(-vals[a] if vals[a] < vals[b] else vals[a] for a, b in zip(s, s[1:])) + vals[s[-1]]
    return total if to_roman(total) == s else None


def train_val(rows: list[dict], val_fraction: float = 0.15, seed: int = 1337) -> tuple[list[dict], list[dict]]:
    """The held-out split's training rows (never the test rows), parted into training and validation rows."""
    rows = split_rows(rows, "train")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = round(len(rows) * val_fraction)
    return [rows[i] for i in sorted(order[n_val:])], [rows[i] for i in sorted(order[:n_val])]


def fitting(rows: list[dict], tokenizer: str, max_len: int, template: str = TEMPLATE) -> list[dict]:
    """The rows whose BOS + prompt + answer + EOS fit in ``max_len`` tokens of ``tokenizer``."""
    from lmforge.model import load_tokenizer

    tok = load_tokenizer(tokenizer)
    texts = [template.format(**r) for r in rows]
    lengths = [len(ids) + 2 for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    return [r for r, n in zip(rows, lengths) if n <= max_len]
