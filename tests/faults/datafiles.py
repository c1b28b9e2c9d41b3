"""Data files for the readers: rows each format reads (structurally valid, odd values) and hostile files
(JSON text with huge numbers, deep nesting and lone surrogates; garbled CSV; damaged Parquet), as bytes."""

from __future__ import annotations

import csv
import io
import json

from fuzzing import garbled, odd, surrogates, texts, weighted
from hypothesis import strategies as st

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


def parquet_bytes(columns: dict[str, list]) -> bytes:
    """A Parquet file of ``columns`` (pyarrow infers the types; mixed columns are made text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, values in columns.items():
        name = name.encode("utf-8", "backslashreplace").decode()  # Parquet names are UTF-8: no lone surrogate
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
