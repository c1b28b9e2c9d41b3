"""Generated data files through the readers and every format, as fine-tuning reads them: rows, or one line
naming the file (and line); never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

from datafiles import csv_files, files_of, json_files, jsonl_files, parquet_files, text_files
from fuzzing import any_bytes, budget, chat_tokenizer, outcome
from hypothesis import given
from hypothesis import strategies as st

from lmforge.core.config import DataConfig, SourceConfig
from lmforge.data.examples import source_examples
from lmforge.data.readers import read_records

FORMATS = {
    "text": {},
    "alpaca": {},
    "prompt_completion": {},
    "template": {"template": "Q: {input}\\nA: {output}"},
    "chat": {"chat_template": "chatml"},
    "sharegpt": {"chat_template": "chatml"},
}
MAX_LEN = 48
formats = st.sampled_from(sorted(FORMATS))


def read_as(data: bytes, suffix: str, fmt: str) -> None:
    """``data`` saved as ``rows<suffix>``: read alone, then read, formatted and tokenized as ``fmt``."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"rows{suffix}"
        p.write_bytes(data)
        records = outcome(suffix[1:], read_records, p, names=(str(p),))
        if isinstance(records, list):
            assert records and all(isinstance(r.row, dict) and r.where.startswith(str(p)) for r in records)
        cfg = DataConfig(format=fmt, **FORMATS[fmt])
        examples = outcome(
            f"{suffix[1:]} as {fmt}", source_examples, SourceConfig(path=str(p)), cfg, chat_tokenizer(), MAX_LEN
        )
        if isinstance(examples, list):
            for ex in examples:
                assert len(ex["input_ids"]) == len(ex["labels"]) <= MAX_LEN
        else:
            assert str(p) in str(examples), examples


def cases(suffix: str, hostile: st.SearchStrategy[bytes]) -> st.SearchStrategy[tuple[str, bytes]]:
    """``(format, file bytes)``: mostly rows of that format with odd values, sometimes a hostile file."""
    names = ["text", "alpaca"] if suffix == ".txt" else sorted(FORMATS)
    return st.sampled_from(names).flatmap(
        lambda fmt: st.tuples(st.just(fmt), st.one_of(files_of(suffix, fmt), files_of(suffix, fmt), hostile))
    )


@budget(150)
@given(cases(".jsonl", jsonl_files))
def test_jsonl(case):
    read_as(case[1], ".jsonl", case[0])


@budget(100)
@given(cases(".json", json_files))
def test_json(case):
    read_as(case[1], ".json", case[0])


@budget(80)
@given(cases(".csv", csv_files(",")))
def test_csv(case):
    read_as(case[1], ".csv", case[0])


@budget(30)
@given(cases(".tsv", csv_files("\t")))
def test_tsv(case):
    read_as(case[1], ".tsv", case[0])


@budget(60)
@given(cases(".parquet", parquet_files))
def test_parquet(case):
    read_as(case[1], ".parquet", case[0])


@budget(40)
@given(cases(".txt", text_files))
def test_text(case):
    read_as(case[1], ".txt", case[0])


@budget(60)
@given(any_bytes, st.sampled_from([".jsonl", ".json", ".csv", ".parquet", ".txt"]), formats)
def test_random_bytes(data, suffix, fmt):
    read_as(data, suffix, fmt)
