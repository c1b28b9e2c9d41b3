"""examples/cantos/augment_cantos.py: variants keep question and answer in step, and never read the test rows."""

import json

import pytest
import yaml
from conftest import example_module

from lmforge.data.split import split_rows

aug = example_module("cantos/augment_cantos.py")
common = example_module("cantos/cantos_common.py")  # the one its import found


def _row(text, refs):
    return {"input": text, "output": json.dumps({"references": refs})}


def test_roman_numerals_round_trip_and_reject_non_canonical_forms():
    to_roman, from_roman = common.to_roman, common.from_roman
    assert [to_roman(n) for n in (4, 9, 14, 40, 83, 94, 117)] == ["IV", "IX", "XIV", "XL", "LXXXIII", "XCIV", "CXVII"]
    assert all(from_roman(to_roman(n)) == n for n in range(1, 400))
    assert from_roman("IIII") is None and from_roman("IC") is None


def test_the_scripts_share_one_helper_module_and_write_the_tasks_prompt():
    assert aug.to_roman is common.to_roman and aug.train_val is common.train_val
    task = yaml.safe_load(common.TASK.read_text(encoding="utf-8"))
    assert common.TASK.name == "task.yaml" and common.TEMPLATE == task["template"]
    assert common.TEMPLATE == '### Question: "{input}"\n ### Answer: {output}'


def test_a_shifted_range_matches_its_question(monkeypatch):
    row = _row("II, ll.4-8", [{"canto": 2, "lines": [4, 5, 6, 7, 8]}])
    for seed in range(20):
        v = aug.shift_row(row, aug.random.Random(seed), swap=0.0)
        refs = json.loads(v["output"])["references"]
        (c, rest) = v["input"].split(", ll.")
        a, b = map(int, rest.split("-"))
        assert refs == [{"canto": common.from_roman(c), "lines": list(range(a, b + 1))}]
        assert 1 <= refs[0]["canto"] <= common.MAX_CANTO


def test_runs_of_whole_cantos_shift_by_their_ends():
    row = _row(
        "the Jefferson Cantos (cantos 31–34, 62–71)",
        [{"canto": c, "lines": []} for c in [31, 32, 33, 34] + list(range(62, 72))],
    )
    v = aug.shift_row(row, aug.random.Random(0), swap=0.0)
    nums = [int(x) for x in common.NUMBER.findall(v["input"])]
    cantos = [r["canto"] for r in json.loads(v["output"])["references"]]
    assert cantos == list(range(nums[0], nums[1] + 1)) + list(range(nums[2], nums[3] + 1))


@pytest.mark.parametrize(
    "row",
    [
        _row("What is the first line of Canto I?", [{"canto": 1, "lines": [1]}]),  # "first" is a word
        _row("the last 5 lines of Canto IV", [{"canto": 4, "lines": [-5, -4, -3, -2, -1]}]),  # from the end
        _row("Every Pisan Canto", [{"canto": 74, "lines": []}]),  # needs knowledge, not a numeral
        _row("Pound describes these talks in The Cantos", []),
    ],
)
def test_rows_whose_answer_is_not_spelled_in_numerals_are_not_varied(row):
    assert aug.shift_row(row, aug.random.Random(0)) is None


def test_files_hold_only_training_rows(tmp_path):
    rows = [_row(f"Canto {common.to_roman(n)} and more", [{"canto": n, "lines": []}]) for n in range(1, 41)]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert aug.main([str(src), "--out", str(tmp_path / "out"), "--copies", "3"]) == 0
    read = {
        n: [json.loads(x) for x in (tmp_path / "out" / f"{n}.jsonl").read_text().splitlines()]
        for n in ("train", "variants", "val")
    }
    test_inputs = {r["input"] for r in split_rows(rows, "test")}
    held = {r["input"] for r in read["val"]}
    assert len(read["train"]) + len(read["val"]) == len(split_rows(rows, "train"))
    assert not test_inputs & {r["input"] for r in read["train"] + read["val"]}
    assert not held & {r["input"] for r in read["train"] + read["variants"]}
    assert len(read["variants"]) >= 2 * len(read["train"])


def test_variants_too_long_for_the_context_are_dropped(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(str(tmp_path / "tok"))
    short = _row("Canto II", [{"canto": 2, "lines": []}])
    long = _row("Cantos II–XL", [{"canto": c, "lines": []} for c in range(2, 41)])
    kept = aug.fitting([short, long], str(tmp_path / "tok"), 128)
    assert kept == [short]
    assert aug.fitting([short, long], str(tmp_path / "tok"), 100_000) == [short, long]
