"""``evaluating(model)``: eval mode (no dropout) for a block, then every module's own mode back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def evaluating(model) -> Iterator[None]:
    """eval() for the block; afterwards each module is in the mode it was in, even if the block raised
    (a module frozen in eval inside a training model stays so)."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, was_training in modes.items():
            m.training = was_training
