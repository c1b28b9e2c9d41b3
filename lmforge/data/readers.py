"""Reading rows for fine-tuning: JSON, JSONL, CSV/TSV, Parquet, plain text, folders and hub datasets.

Every row keeps where it came from (``file:line``, or ``file: row N`` where there are no lines), so a
bad row is reported at its place. Files must be UTF-8 (a leading byte-order mark is accepted).
``split`` only applies to hub datasets; a local file is all of its rows.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path
from typing import NamedTuple, Optional

from lmforge.core.errors import LmforgeError, first_line
from lmforge.core.hub import looks_like_hub_id

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")


class Record(NamedTuple):
    """One row and its place: ``data.jsonl:12``, ``data.parquet: row 3``, ``owner/name[train] row 7``."""

    where: str
    row: dict


def read_rows(path: str | Path, split: str = "train") -> list[dict]:
    """The rows of a file, a folder of files, or a hub dataset (``owner/name``) as a list of dicts."""
    return [r.row for r in read_records(path, split)]


def read_records(
    path: str | Path, split: str = "train", subset: Optional[str] = None, max_rows: Optional[int] = None
) -> list[Record]:
    """Like ``read_rows`` but each row comes with its place, for error messages."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and _suffix(f) in SUFFIXES)
        if not files:
            raise LmforgeError(f"{p}: folder has no data files ({', '.join(SUFFIXES)})")
        return [r for f in files for r in _read_file(f)]
    if p.is_file():
        return _read_file(p)
    name = str(path)
    if _suffix(p) in SUFFIXES or not looks_like_hub_id(name):
        raise LmforgeError(f"data file not found: {name}")
    return read_hub(name, split, subset, max_rows)


def _suffix(p: Path) -> str:
    return p.suffix.lower()


def _read_file(p: Path) -> list[Record]:
    suffix = _suffix(p)
    if suffix not in SUFFIXES:
        raise LmforgeError(f"{p}: unknown file type {suffix or '(none)'!r}; expected one of {', '.join(SUFFIXES)}")
    if suffix == ".parquet":
        records = _read_parquet(p)
    else:
        text = read_text(p)
        reader = {
            ".jsonl": _read_jsonl,
            ".json": _read_json,
            ".csv": _read_csv,
            ".tsv": _read_csv,
            ".txt": _read_lines,
        }[suffix]
        records = reader(p, text) if text.strip() else []
    if not records:
        raise LmforgeError(f"{p}: empty file, no rows")
    return records


def read_text(p: Path) -> str:
    """A file as UTF-8 text (a BOM is dropped); otherwise one line naming the file, line and byte."""
    data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        at = e.start + len(data) - len(e.object)  # utf-8-sig counts from after a BOM
        line = data[:at].count(b"\n") + 1
        raise LmforgeError(
            f"{p}:{line}: not UTF-8 text (byte 0x{data[at]:02x} at offset {at}); re-save the file as UTF-8"
        ) from None


def _object(p: Path, where: str, value) -> dict:
    if not isinstance(value, dict):
        raise LmforgeError(f"{where}: expected a JSON object with named columns, got {type(value).__name__}")
    return value


def lines(text: str) -> list[str]:
    """``text`` cut at line ends (LF, CR LF, CR) only, as editors number lines: unlike ``str.splitlines``,
    not at U+2028, U+0085, form feeds and the like, which JSON strings may hold."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def loads(text: str, where: str):
    """``json.loads`` with every failure as one line at ``where``: bad syntax, nesting too deep for
    Python's parser, an integer past Python's digit limit."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:  # ``text`` may be a whole file: then its line too
        at = f"{where}:{e.lineno}" if e.lineno > 1 else where
        raise LmforgeError(f"{at}: not valid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise LmforgeError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as e:  # an integer of more than sys.get_int_max_str_digits() digits
        raise LmforgeError(f"{where}: {unreadable_number(e)}") from None
    no_lone_surrogate(text, value, where)
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def no_lone_surrogate(text: str, value, where: str) -> None:
    """JSON may escape half of a UTF-16 pair alone (``"\\ud800"``); Python decodes it to a string no
    tokenizer or file can encode. Refuse it here, at its line, rather than deep inside tokenization."""
    if not _SURROGATE_ESCAPE.search(text):
        return
    stack = [value]
    while stack:  # iterative: the value may be nested as deep as the parser allows
        v = stack.pop()
        if isinstance(v, dict):
            stack += [*v.keys(), *v.values()]
        elif isinstance(v, list):
            stack += v
        elif isinstance(v, str) and any("\ud800" <= c <= "\udfff" for c in v):
            bad = next(c for c in v if "\ud800" <= c <= "\udfff")
            raise LmforgeError(
                f"{where}: the escape \\u{ord(bad):04x} is half of a UTF-16 pair, not a character; fix or remove it"
            )


def unreadable_number(e: ValueError) -> str:
    """What to say of an integer longer than Python reads (``json`` raises a plain ValueError)."""
    if "digits" in str(e):
        return f"a JSON number has more than {sys.get_int_max_str_digits()} digits; write it as a string"
    return f"JSON value not readable: {first_line(e)}"


def _read_jsonl(p: Path, text: str) -> list[Record]:
    out = []
    for n, line in enumerate(lines(text), start=1):
        if not line.strip():
            continue
        where = f"{p}:{n}"
        out.append(Record(where, _object(p, where, loads(line, where))))
    return out


def _read_json(p: Path, text: str) -> list[Record]:
    """A list of objects; each row is named by its line and index. A file of one object per line is JSONL."""
    start = len(text) - len(text.lstrip())
    if not text.startswith("[", start):
        _not_one_object(p, text)
        return _read_jsonl(p, text)  # `datasets`' to_json writes JSON lines under a .json name
    decoder = json.JSONDecoder()
    out: list[Record] = []
    i, line, counted = start + 1, 1, 0
    while True:
        i = _skip_space(text, i)
        if text.startswith("]", i) and not out:
            break
        line += text.count("\n", counted, i)
        counted = i
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise LmforgeError(f"{p}:{e.lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
        except RecursionError:
            raise LmforgeError(f"{p}:{line}: JSON nested too deeply to read") from None
        except ValueError as e:  # an integer past Python's digit limit
            raise LmforgeError(f"{p}:{line}: {unreadable_number(e)}") from None
        where = f"{p}:{line} (row {len(out)})"
        no_lone_surrogate(text[i:end], value, where)
        out.append(Record(where, _object(p, where, value)))
        i = _skip_space(text, end)
        if text.startswith(",", i):
            i += 1
        elif text.startswith("]", i):
            break
        else:
            bad_line = text.count("\n", 0, i) + 1
            raise LmforgeError(f"{p}:{bad_line}: not valid JSON: expected ',' or ']' after row {len(out) - 1}")
    if text[i + 1 :].strip():
        raise LmforgeError(f"{p}:{text.count(chr(10), 0, i) + 1}: not valid JSON: extra data after the list")
    return out


def _not_one_object(p: Path, text: str) -> None:
    """A whole-file object (``{"data": [...]}``) is not a table of rows: say so rather than guess."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # not one JSON document: read as JSON lines, which names the line
        return
    if len(lines(text.strip())) > 1 or not isinstance(value, dict):
        keys = f" with keys {sorted(value)[:5]}" if isinstance(value, dict) else ""
        raise LmforgeError(
            f"{p}: expected a list of objects (or one object per line), got one {type(value).__name__}{keys}"
        )


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _read_csv(p: Path, text: str) -> list[Record]:
    """The first line names the columns; a row with a different number of fields is an error."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if _suffix(p) == ".tsv" else ",")
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise LmforgeError(f"{p}:1: not valid CSV: {e}") from None
    if not header or not any(h.strip() for h in header):
        return []
    header = [h.strip() for h in header]
    out, prev = [], reader.line_num
    try:
        for fields in reader:
            start, prev = prev + 1, reader.line_num  # a quoted field may span lines: name the first
            if not fields:
                continue
            if len(fields) != len(header):
                raise LmforgeError(f"{p}:{start}: {len(fields)} fields but the header has {len(header)} columns")
            out.append(Record(f"{p}:{start}", dict(zip(header, fields))))
    except csv.Error as e:
        raise LmforgeError(f"{p}:{reader.line_num}: not valid CSV: {e}") from None
    return out


def _read_lines(p: Path, text: str) -> list[Record]:
    """Plain text: each non-blank line is a row ``{"text": line}``."""
    return [Record(f"{p}:{n}", {"text": line}) for n, line in enumerate(lines(text), start=1) if line.strip()]


def _read_parquet(p: Path) -> list[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LmforgeError(f"{p}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        rows = pq.read_table(p).to_pylist()
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged or foreign file
        raise LmforgeError(f"{p}: not a readable Parquet file: {first_line(e)}") from None
    return [Record(f"{p}: row {i}", row) for i, row in enumerate(rows)]


def read_hub(
    name: str, split: str = "train", subset: Optional[str] = None, max_rows: Optional[int] = None
) -> list[Record]:
    """A hub dataset through ``datasets.load_dataset`` (streamed when ``max_rows``); offline gives one line."""
    import itertools

    import datasets

    try:
        ds = datasets.load_dataset(name, subset, split=split, streaming=max_rows is not None)
        if max_rows is not None:
            ds = list(itertools.islice(ds, max_rows))
    except Exception as e:  # datasets raises ConnectionError, DatasetNotFoundError, ValueError (bad split), ...
        raise LmforgeError(
            f"cannot load dataset {name!r} split {split!r} from the Hugging Face hub "
            f"(offline, private or misspelled?): {first_line(e)}"
        ) from None
    records = [Record(f"{name}[{split}] row {i}", row) for i, row in enumerate(ds)]
    if not records:
        raise LmforgeError(f"dataset {name!r} split {split!r} has no rows")
    return records
