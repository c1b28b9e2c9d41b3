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
import csv
import functools
import io
import json
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
strings = st.one_of(texts, texts, surrogates)


def _number_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers().map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "0.0e-400", "1E+2"]),
        st.integers(4301, 6000).map(lambda n: "9" * n),  # past Python's int digit limit
    )


def _json_string(s: str, ascii_only: bool) -> str:
    return json.dumps(s, ensure_ascii=ascii_only)


string_text = st.builds(_json_string, strings, st.booleans())
"""A JSON string literal; with ensure_ascii off its raw characters (U+2028, U+0085...) are kept."""

scalar_text = st.one_of(string_text, string_text, _number_text(), st.sampled_from(["true", "false", "null"]))


def _array(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in pairs) + "}"


KEYS = (
    "text instruction input output prompt completion messages conversations system role content from value "
    "name tool_calls"
).split()
ROLES = ["user", "assistant", "system", "tool", "human", "gpt", "function_call", "observation", "USER", "", "bot"]

keys = st.one_of(st.sampled_from(KEYS), texts)
value_text = st.recursive(
    scalar_text,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array), st.lists(st.tuples(keys, inner), max_size=4).map(_object)
    ),
    max_leaves=12,
)
deep_text = st.integers(50, 4000).flatmap(lambda n: st.sampled_from(["[" * n + "]" * n, '{"a": ' * n + "1" + "}" * n]))
"""Nesting deeper than Python's recursion limit allows a recursive parser."""

role_text = st.one_of(st.sampled_from(ROLES).map(json.dumps), value_text)
turn_text = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["role", "from"]), role_text),
        st.tuples(st.sampled_from(["content", "value"]), st.one_of(string_text, value_text)),
        st.tuples(keys, value_text),
    ),
    max_size=4,
).map(_object)
turns_text = st.one_of(st.lists(st.one_of(turn_text, turn_text, value_text), max_size=5).map(_array), value_text)

row_text = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["messages", "conversations"]), turns_text),
        st.tuples(st.sampled_from(KEYS), st.one_of(string_text, string_text, value_text, deep_text)),
        st.tuples(keys, value_text),
    ),
    max_size=6,
).map(_object)
"""One row as JSON text: columns the formats read, with odd values of every type."""
any_row_text = st.one_of(row_text, row_text, row_text, value_text, deep_text)


def _garble(text: str, edits: list[tuple[int, int, bytes]]) -> bytes:
    """``text``'s UTF-8 bytes with bytes cut, replaced or inserted at the given places."""
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


def _join_lines(lines: list[str], end: str, bom: bool, blank: bool) -> bytes:
    text = end.join(lines + ([""] if blank else []))
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass")


line_ends = st.sampled_from(["\n", "\r\n", "\r"])
jsonl_valid = st.builds(
    _join_lines, st.lists(any_row_text, min_size=1, max_size=5), line_ends, st.booleans(), st.booleans()
)
json_valid = st.builds(
    lambda rows, end, indent: ("[" + end + ("," + end).join((" " * indent) + r for r in rows) + end + "]").encode(
        "utf-8", "surrogatepass"
    ),
    st.lists(any_row_text, max_size=5),
    line_ends,
    st.integers(0, 4),
)
jsonl_files = st.one_of(jsonl_valid, jsonl_valid, garbled(jsonl_valid.map(lambda b: b.decode("utf-8", "replace"))))
json_files = st.one_of(
    json_valid, json_valid, garbled(json_valid.map(lambda b: b.decode("utf-8", "replace"))), jsonl_valid
)


def _csv_bytes(rows: list[list[str]], delimiter: str, quoting: int, end: str, bom: bool) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator=end, escapechar="\\")
    for row in rows:
        writer.writerow(row)
    return (b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8", "surrogatepass")


cells = st.one_of(texts, value_text, turns_text)
header = st.lists(st.one_of(st.sampled_from(KEYS), texts), min_size=1, max_size=5)


def csv_files(delimiter: str) -> st.SearchStrategy[bytes]:
    valid = st.builds(
        lambda head, rows, quoting, end, bom: _csv_bytes([head, *rows], delimiter, quoting, end, bom),
        header,
        st.lists(st.lists(cells, max_size=6), max_size=5),
        st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
        line_ends,
        st.booleans(),
    )
    return st.one_of(valid, valid, garbled(valid.map(lambda b: b.decode("utf-8", "replace"))))


text_files = st.one_of(
    st.lists(texts, max_size=6).map(lambda lines: "\n".join(lines).encode("utf-8")),
    garbled(st.lists(texts, max_size=6).map("\n".join)),
)
any_bytes = st.binary(max_size=200)


def parquet_bytes(columns: dict[str, list]) -> bytes:
    """A Parquet file of ``columns`` (pyarrow infers the types; mixed columns are made text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, values in columns.items():
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
            arrays[name] = pa.array([None if v is None else ascii(v) for v in values])
    buf = io.BytesIO()
    try:
        pq.write_table(pa.table(arrays), buf)
    except pa.ArrowNotImplementedError:  # e.g. a struct column of empty objects: keep the others
        pq.write_table(pa.table({k: v for k, v in arrays.items() if not pa.types.is_struct(v.type)}), buf)
    return buf.getvalue()


_turn = st.fixed_dictionaries(
    {"role": st.sampled_from(ROLES), "content": st.one_of(st.none(), texts)},
    optional={"from": st.sampled_from(ROLES), "value": texts},
)
_column = st.one_of(
    st.lists(st.one_of(st.none(), texts), min_size=3, max_size=3),
    st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=3, max_size=3),
    st.lists(st.floats(), min_size=3, max_size=3),
    st.lists(st.one_of(st.none(), st.lists(_turn, max_size=3)), min_size=3, max_size=3),
    st.lists(st.binary(max_size=8), min_size=3, max_size=3),
)
parquet_valid = st.dictionaries(st.one_of(st.sampled_from(KEYS), texts.filter(bool)), _column, max_size=4).map(
    parquet_bytes
)
parquet_files = st.one_of(
    parquet_valid,
    parquet_valid.flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),  # cut short
    st.tuples(parquet_valid, st.integers(0, 10_000), st.integers(1, 255)).map(
        lambda t: t[0][: t[1] % len(t[0])] + bytes([t[0][t[1] % len(t[0])] ^ t[2]]) + t[0][t[1] % len(t[0]) + 1 :]
    ),  # one byte flipped
)

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
values = st.one_of(
    odd, surrogates, st.none(), st.booleans(), st.integers(), st.floats(), st.lists(odd, max_size=2),
    st.dictionaries(st.sampled_from(KEYS), odd, max_size=2),
)  # fmt: skip
fields = weighted((24, odd), (1, values))
"""A column's value: mostly text, sometimes any JSON value (a lone surrogate, a number, a list, null...)."""
SPEAKERS = ["user", "assistant", "assistant", "user", "system", "tool", "human", "gpt", "bot", "Assistant", ""]


def _conversation(turns: list[tuple[str, object]], end: bool, sharegpt: bool) -> list[dict]:
    turns = turns + ([("assistant", "fin")] if end else [])
    if sharegpt:
        return [{"from": r if r != "assistant" else "gpt", "value": c} for r, c in turns]
    return [{"role": r, "content": c} for r, c in turns]


def conversations(sharegpt: bool) -> st.SearchStrategy[list[dict]]:
    turns = st.lists(st.tuples(st.sampled_from(SPEAKERS), fields), min_size=0, max_size=4)
    return st.builds(_conversation, turns, weighted((4, st.just(True)), (1, st.just(False))), st.just(sharegpt))


def _with_extra(row: dict, extra: dict) -> dict:
    return {**extra, **row}


def format_rows(fmt: str) -> st.SearchStrategy[list[dict]]:
    """Rows with the columns ``fmt`` reads (sometimes one missing, or extra ones), odd values."""
    cols = {
        "text": {"text": fields},
        "alpaca": {"instruction": fields, "input": fields, "output": fields},
        "prompt_completion": {"prompt": fields, "completion": fields},
        "template": {"input": fields, "output": fields},
        "chat": {"messages": conversations(False)},
        "sharegpt": {"conversations": conversations(True), "system": fields},
    }[fmt]
    optional = {"input", "system"}
    row = st.fixed_dictionaries(
        {k: v for k, v in cols.items() if k not in optional},
        optional={k: v for k, v in cols.items() if k in optional},
    )
    row = st.builds(_with_extra, row, st.dictionaries(st.sampled_from(KEYS), values, max_size=1))
    return st.lists(row, min_size=1, max_size=3)


def jsonl_of(rows: list[dict], ascii_only: bool, end: str) -> bytes:
    return end.join(json.dumps(r, ensure_ascii=ascii_only) for r in rows).encode("utf-8", "surrogatepass")


def json_of(rows: list[dict], ascii_only: bool, indent) -> bytes:
    return json.dumps(rows, ensure_ascii=ascii_only, indent=indent).encode("utf-8", "surrogatepass")


def _cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def csv_of(rows: list[dict], delimiter: str) -> bytes:
    head = list(dict.fromkeys(k for r in rows for k in r))
    body = [[_cell(r.get(k)) for k in head] for r in rows]
    return _csv_bytes([head, *body], delimiter, csv.QUOTE_MINIMAL, "\n", False)


def parquet_of(rows: list[dict]) -> bytes:
    head = list(dict.fromkeys(k for r in rows for k in r))
    return parquet_bytes({k: [r.get(k) for r in rows] for k in head})


def files_of(suffix: str, fmt: str) -> st.SearchStrategy[bytes]:
    """A file of ``fmt`` rows in the ``suffix`` format."""
    rows = format_rows(fmt)
    if suffix == ".jsonl":
        return st.builds(jsonl_of, rows, st.booleans(), line_ends)
    if suffix == ".json":
        return st.builds(json_of, rows, st.booleans(), st.sampled_from([None, 0, 2]))
    if suffix in (".csv", ".tsv"):
        return st.builds(csv_of, rows, st.just("\t" if suffix == ".tsv" else ","))
    if suffix == ".parquet":
        return rows.map(parquet_of)
    return st.lists(odd, min_size=1, max_size=5).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))
