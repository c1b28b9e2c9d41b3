"""Readers: every file kind round-trips, and every bad input is one line naming the file and line."""

from __future__ import annotations

import csv
import json

import pytest

from lmforge.core.errors import LmforgeError
from lmforge.data.readers import read_records, read_rows

ROWS = [
    {"instruction": "Say hi", "input": "", "output": "hi"},
    {"instruction": 'Quote, with "quotes"', "input": "two\nlines", "output": "é ü 漢"},
    {"instruction": "Last", "input": "x", "output": "y"},
]


def one_line_error(fn, *args) -> str:
    with pytest.raises(LmforgeError) as info:
        fn(*args)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def test_json_list_rows_and_lines(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(ROWS, indent=2, ensure_ascii=False), encoding="utf-8")
    records = read_records(p)
    assert [r.row for r in records] == ROWS
    # each row is named by the line its object starts on
    lines = p.read_text(encoding="utf-8").splitlines()
    for i, r in enumerate(records):
        line = int(r.where.split(":")[-1].split(" ")[0])
        assert lines[line - 1].strip() == "{", (r.where, lines[line - 1])
        assert r.where.endswith(f"(row {i})")


def test_json_named_json_holding_json_lines(tmp_path):
    p = tmp_path / "d.json"  # what datasets' to_json writes
    p.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n", encoding="utf-8")
    assert read_rows(p) == ROWS


def test_json_errors(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[\n {"a": 1},\n {"a": 2,}\n]', encoding="utf-8")
    assert one_line_error(read_rows, p).startswith(f"{p}:3: not valid JSON")
    p.write_text('[\n {"a": 1},\n [1, 2]\n]', encoding="utf-8")
    assert one_line_error(read_rows, p).startswith(f"{p}:3 (row 1): expected a JSON object")
    p.write_text('{\n "data": [{"a": 1}]\n}', encoding="utf-8")
    assert "expected a list of objects" in one_line_error(read_rows, p)
    p.write_text("[]", encoding="utf-8")
    assert one_line_error(read_rows, p) == f"{p}: empty file, no rows"


def test_jsonl_round_trip_skips_blank_lines(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n", encoding="utf-8")
    records = read_records(p)
    assert [r.row for r in records] == ROWS[:2]
    assert [r.where for r in records] == [f"{p}:1", f"{p}:3"]


def test_jsonl_malformed_row_names_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n{"a": 3\n{"a": 4}\n', encoding="utf-8")
    msg = one_line_error(read_rows, p)
    assert msg.startswith(f"{p}:3: not valid JSON"), msg
    p.write_text('{"a": 1}\n"just a string"\n', encoding="utf-8")
    assert one_line_error(read_rows, p) == f"{p}:2: expected a JSON object with named columns, got str"


@pytest.mark.parametrize("suffix,delimiter", [(".csv", ","), (".tsv", "\t")])
def test_csv_round_trip(tmp_path, suffix, delimiter):
    p = tmp_path / f"d{suffix}"
    with p.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROWS[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(ROWS)
    records = read_records(p)
    assert [r.row for r in records] == ROWS
    # row 2 has a quoted newline, so row 3 starts on line 5
    assert [r.where for r in records] == [f"{p}:2", f"{p}:3", f"{p}:5"]


def test_csv_wrong_field_count_names_line(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("prompt,completion\na,b\nc,d,e\n", encoding="utf-8")
    assert one_line_error(read_rows, p) == f"{p}:3: 3 fields but the header has 2 columns"


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), p)
    records = read_records(p)
    assert [r.row for r in records] == ROWS
    assert records[2].where == f"{p}: row 2"
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    assert one_line_error(read_rows, bad).startswith(f"{bad}: not a readable Parquet file")


def test_text_lines_and_folders(tmp_path):
    (tmp_path / "b.txt").write_text("first line\n\nsecond line\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "from jsonl"}) + "\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored: not a data file", encoding="utf-8")
    records = read_records(tmp_path)
    assert [r.row["text"] for r in records] == ["from jsonl", "first line", "second line"]
    assert records[2].where == f"{tmp_path / 'b.txt'}:3"


def test_missing_empty_and_unknown_files(tmp_path):
    assert one_line_error(read_rows, tmp_path / "nope.jsonl") == f"data file not found: {tmp_path / 'nope.jsonl'}"
    assert one_line_error(read_rows, "nope.jsonl") == "data file not found: nope.jsonl"
    # owner/name shaped, but a file name: a missing file, not a hub lookup
    assert one_line_error(read_rows, "data/nope.jsonl") == "data file not found: data/nope.jsonl"
    for name, content in [("e.jsonl", ""), ("w.csv", " \n\n"), ("h.csv", "a,b\n")]:
        p = tmp_path / name
        p.write_text(content, encoding="utf-8")
        assert one_line_error(read_rows, p) == f"{p}: empty file, no rows"
    p = tmp_path / "d.xml"
    p.write_text("<a/>", encoding="utf-8")
    assert "unknown file type '.xml'" in one_line_error(read_rows, p)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    assert "folder has no data files" in one_line_error(read_rows, empty_dir)


def test_non_utf8_names_file_and_line(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes('{"text": "ok"}\n{"text": "café"}\n'.encode("latin-1"))
    msg = one_line_error(read_rows, p)
    assert msg.startswith(f"{p}:2: not UTF-8 text (byte 0xe9"), msg
    p.write_bytes(b"\xef\xbb\xbf" + b'{"text": "bom is fine"}\n')  # a UTF-8 byte-order mark is accepted
    assert read_rows(p) == [{"text": "bom is fine"}]


def test_hub_dataset_offline_is_one_line(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # conftest sets it before import too; no network here
    msg = one_line_error(read_rows, "lmforge-test/no-such-dataset", "train")
    assert msg.startswith("cannot load dataset 'lmforge-test/no-such-dataset' split 'train'"), msg


def test_reference_formats_read():
    """Rows shaped like ../shared/data's: Cantos JSONL and an Alpaca JSON array (small copies in tests/data)."""
    from conftest import DATA

    cantos = read_rows(DATA / "cantos_rows.jsonl")
    assert len(cantos) == 12 and all(set(r) == {"input", "output"} for r in cantos)
    assert cantos[5]["input"] == "Pound describes these talks in \u201cThe Cantos\u201d,"  # UTF-8 quotes kept
    alpaca = read_rows(DATA / "alpaca_rows.json")
    assert len(alpaca) == 3 and all({"instruction", "input", "output", "text"} == set(r) for r in alpaca)
    assert alpaca[1]["input"] == "The sea is calm tonight." and alpaca[0]["input"] == ""
