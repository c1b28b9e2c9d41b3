"""The fixed held-out split shared by training and evaluation, so a task's test rows are never trained on."""

from __future__ import annotations

import random

from lmforge.core.errors import LmforgeError

SPLIT_SEED = 20260101  # fixed: the held-out split never changes between runs or machines
TEST_FRACTION = 0.2


def split_rows(rows: list, name: str, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> list:
    """A deterministic split: ``test`` is a fixed random ``test_fraction`` of rows, ``train`` the rest."""
    if name in ("all", None):
        return list(rows)
    if name not in ("train", "test"):
        raise LmforgeError(f"unknown split {name!r}; use train, test or all")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    test = set(order[: max(1, round(len(rows) * test_fraction))])
    return [r for i, r in enumerate(rows) if (i in test) == (name == "test")]
