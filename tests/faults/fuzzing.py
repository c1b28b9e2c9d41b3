"""What every input reader must do with any input, and the inputs to throw at it.

The property: a reader returns, or raises a one-line ``LmforgeError`` naming the file (file:line) or the
key; any other exception is a traceback the user would see, and a reader that does not answer within
``LIMIT_S`` hangs. ``outcome`` checks one call; the strategies below make the inputs: structurally valid
but odd rows (every column a format reads, with values of every JSON type, huge numbers, deep nesting,
lone surrogates, line separators inside strings) and garbled or random bytes.

The tests in this folder and ``benchmarks/fuzz.py`` run the same properties, with few and many cases.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from lmforge.core.errors import LmforgeError

LIMIT_S = 20.0
"""A call that takes longer hangs (the slowest reader here answers in well under a second)."""

CASES: Counter = Counter()
"""Generated cases run per reader (``benchmarks/fuzz.py`` prints them)."""
REFUSED: Counter = Counter()
"""Of those, the ones answered with a one-line error (the rest were read)."""
SAID: dict[str, Counter] = {}
"""Per reader, how often each kind of refusal was said (its message with the place cut off)."""


class Hang(AssertionError):
    """A reader that did not answer within its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raises ``Hang`` inside the block once ``seconds`` have passed (main thread, SIGALRM)."""

    def _raise(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def one_line(message: str, names: tuple[str, ...] = ()) -> str:
    """Asserts that ``message`` is one non-empty line naming at least one of ``names`` (when given)."""
    assert message.strip(), "an empty error message"
    assert len(message.splitlines()) == 1, f"not one line: {message!r}"
    if names:
        assert any(n in message for n in names), f"{message!r} names none of {names}"
    return message


def outcome(reader: str, fn, *args, names: tuple[str, ...] = (), **kwargs):
    """``fn(*args, **kwargs)``'s result, or its ``LmforgeError`` after checking the message; any other
    exception propagates (hypothesis reports it with the input). Counts one case for ``reader``."""
    CASES[reader] += 1
    with time_limit(LIMIT_S):
        try:
            return fn(*args, **kwargs)
        except LmforgeError as e:
            one_line(str(e), names)
            REFUSED[reader] += 1
            kind = str(e).split(": ", 2)[-1][:60] if "/" in str(e) else str(e)[:60]
            SAID.setdefault(reader, Counter())[kind] += 1
            return e


# ---- text and JSON values ----------------------------------------------------------------------------

ODD_CHARS = "\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\ufeff\r\n\t\"'\\{}[],:#|>-&*!%@`"
"""Characters that readers split, quote or escape on: NUL, the other line breaks of str.splitlines, BOMs."""

texts = st.text(st.one_of(st.characters(), st.sampled_from(ODD_CHARS)), max_size=24)
surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)
"""Lone surrogates: valid inside JSON escapes (``"\\ud800"``), not encodable as UTF-8."""


def _garble(text: str, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    for kind, at, piece in edits:
        at = at % (len(data) + 1)
        if kind == 0:
            del data[at : at + len(piece)]
        elif kind == 1:
            data[at : at + len(piece)] = piece
        else:
            data[at:at] = piece
    return bytes(data)


def garbled(valid: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """Bytes of a valid document with a few edits: cut, overwritten, inserted (random bytes)."""
    edit = st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.binary(min_size=1, max_size=4))
    return st.builds(_garble, valid, st.lists(edit, min_size=1, max_size=4))


any_bytes = st.binary(max_size=200)


CHAT_VERSE = "Le vent se lève, il faut tenter de vivre.\nThe sea is calm tonight, the tide is full.\n" * 20


@functools.cache
def chat_tokenizer():
    """A tiny BPE tokenizer with ChatML's markers and template, as chat fine-tuning leaves one."""
    from tokenizers import AddedToken

    from lmforge.data.chat import CHATML
    from lmforge.model.tokenizer import train_tokenizer

    tok = train_tokenizer([CHAT_VERSE], vocab_size=160)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")])
    tok.chat_template = CHATML
    return tok


SCALE = float(os.environ.get("LMFORGE_FUZZ_SCALE", "1"))
"""Cases per property relative to the test suite's (``benchmarks/fuzz.py --scale 20`` runs 20 times as many)."""


def budget(n: int) -> settings:
    """``n`` generated cases (times ``SCALE``), no deadline (``outcome``'s limit catches hangs), and no
    example database: a CI run draws the same cases each time (derandomized), a soak a fresh draw."""
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        database=None,
        derandomize=SCALE == 1,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )


# ---- rows the formats read, structurally valid, with odd values -------------------------------------------

TRAPS = ["", " ", "\n", "{output}", "{", "}", "{0}", "<|im_end|>", "<|im_start|>assistant\n", "<s>", "</s>", "<pad>"]
TRAPS += ["<unk>", "\\n", "### Response:\n", "{% generation %}", "{{ messages }}", "{% raise %}", "null", "[]"]


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of ``choices``, each drawn in proportion to its weight."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


odd = weighted((4, texts), (2, st.text()), (2, st.sampled_from(TRAPS)), (1, st.text(min_size=100, max_size=300)))
"""Text that is valid Unicode but odd: control characters, line separators, template and chat markers."""
