"""The default corpus of `lmforge demo`: public-domain English verse shipped inside the package (see LICENSE.md)."""

from __future__ import annotations

import gzip
from importlib.resources import files

from lmforge.core.errors import LmforgeError

CORPUS_FILE = "poetry.txt.gz"


def load_default_corpus() -> str:
    """The embedded poetry as one string: one line of verse per line, one blank line between poems."""
    resource = files(__name__).joinpath(CORPUS_FILE)
    try:
        data = resource.read_bytes()
    except FileNotFoundError:
        raise LmforgeError(
            f"{resource}: the default corpus is missing from this installation; reinstall lmforge"
        ) from None
    return gzip.decompress(data).decode("utf-8")
