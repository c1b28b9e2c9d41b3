"""Inputs the fuzzing found (or showed near) a traceback with, each replayed as a plain example: now a
one-line error at its place, or the rows it holds."""

from __future__ import annotations

import json

import pytest
from fuzzing import chat_tokenizer, one_line

from lmforge.core.config import DataConfig, SourceConfig
from lmforge.core.errors import LmforgeError
from lmforge.data.examples import source_examples
from lmforge.data.readers import read_records


def _refused(path, *where: str) -> str:
    with pytest.raises(LmforgeError) as e:
        read_records(path)
    return one_line(str(e.value), where or (str(path),))


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_nesting_deeper_than_the_parser_is_a_line_not_a_recursion_error(tmp_path, suffix):
    p = tmp_path / f"rows{suffix}"
    deep = "[" * 5000 + "]" * 5000
    p.write_text('{"text": "ok"}\n' + ('{"text": ' + deep + "}") if suffix == ".jsonl" else "[" + deep + "]")
    assert "nested too deeply" in _refused(p, f"{p}:")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_number_past_pythons_digit_limit_is_a_line_not_a_value_error(tmp_path, suffix):
    p = tmp_path / f"rows{suffix}"
    row = '{"text": "x", "n": ' + "9" * 5000 + "}"
    p.write_text(row if suffix == ".jsonl" else f"[\n{row}\n]")
    assert "more than 4300 digits" in _refused(p, f"{p}:1" if suffix == ".jsonl" else f"{p}:2")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_lone_surrogate_escape_is_refused_at_its_line_not_in_the_tokenizer(tmp_path, suffix):
    # json.loads('"\\ud800"') is a str no tokenizer can encode: it used to surface as the tokenizers
    # library's TypeError ("TextEncodeInput must be Union[...]") from the middle of fine-tuning.
    p = tmp_path / f"rows{suffix}"
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "\ud800", "completion": "c"}]
    text = "\n".join(json.dumps(r) for r in rows) if suffix == ".jsonl" else json.dumps(rows, indent=1)
    p.write_text(text)
    assert "\\ud800" in text
    msg = _refused(p, f"{p}:2" if suffix == ".jsonl" else f"{p}:")
    assert "half of a UTF-16 pair" in msg
    with pytest.raises(LmforgeError):
        source_examples(SourceConfig(path=str(p)), DataConfig(format="prompt_completion"), chat_tokenizer(), 48)


def test_a_surrogate_pair_escape_is_one_character_and_reads(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"text": "\\ud83d\\ude00"}\n')
    assert read_records(p)[0].row == {"text": "\U0001f600"}


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x0c", "\x1c"])
def test_jsonl_rows_are_cut_at_line_ends_only(tmp_path, sep):
    # str.splitlines() also cuts at U+2028, U+0085, form feed...: a row holding one raw inside a string
    # (json.dumps(ensure_ascii=False) writes them so) was refused as "Unterminated string"
    p = tmp_path / "rows.jsonl"
    p.write_text(json.dumps({"text": f"a{sep}b"}, ensure_ascii=False) + "\n" + json.dumps({"text": "c"}) + "\n")
    records = read_records(p)
    assert [r.row["text"] for r in records] == [f"a{sep}b", "c"]
    assert [r.where for r in records] == [f"{p}:1", f"{p}:2"]


def test_text_lines_are_numbered_as_editors_number_them(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("one\x0cstill one\ntwo\r\nthree\n")
    assert [(r.where, r.row["text"]) for r in read_records(p)] == [
        (f"{p}:1", "one\x0cstill one"),
        (f"{p}:2", "two"),
        (f"{p}:3", "three"),
    ]
