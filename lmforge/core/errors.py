"""One exception type for user mistakes: the CLI prints its message on one line, no traceback.

And the two helpers every one-line message uses: the first line of a library's exception, and a
"did you mean" hint for a misspelled name.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LmforgeError(Exception):
    """A bad input or setting; the message names the file:line or the config key and says what to do."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (its type's name when it has none)."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` for the closest known name, else ``"; known: a, b, c"`` (empty when none)."""
    known = list(known)
    hint = difflib.get_close_matches(name, known, n=1, cutoff=cutoff)
    if hint:
        return f"; did you mean {hint[0]!r}?"
    return f"; known: {', '.join(sorted(known))}" if known else ""


def printable(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (``\\r``, ``\\x85``): a message
    that quotes a user's key or value stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
