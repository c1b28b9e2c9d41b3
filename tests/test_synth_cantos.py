"""examples/cantos/synth_cantos.py: every synthetic answer is the one its question spells; rows are new and
reproducible."""

import json
import random

import pytest
from conftest import example_module

syn = example_module("cantos/synth_cantos.py")
aug = example_module("cantos/augment_cantos.py")
common = example_module("cantos/cantos_common.py")

PROSE = [
    "The river floods every spring and the town moved uphill in 1819.",
    "Henry VIII founded the navy yard, and its records run to 577 pages.",
    "Nothing in this sentence refers to a poem at all, only to weather.",
]


def _numbers(text):
    """Every numeral of ``text`` as a value (Roman or Arabic)."""
    out = []
    for m in common.NUMBER.finditer(text):
        s = m.group(1)
        v = int(s) if s.isdigit() else common.from_roman(s)
        if v is not None:
            out.append(v)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_a_line_range_spells_its_canto_and_both_ends(seed):
    text, refs = syn.Citations(random.Random(seed)).line_range()
    (ref,) = refs
    lines = ref["lines"]
    assert lines == list(range(lines[0], lines[-1] + 1)) and 1 <= ref["canto"] <= common.MAX_CANTO
    nums = _numbers(text)
    assert ref["canto"] in nums and lines[0] in nums and lines[-1] in nums


@pytest.mark.parametrize("seed", range(40))
def test_runs_and_lists_of_cantos_are_whole_cantos_the_text_names(seed):
    cit = syn.Citations(random.Random(seed))
    text, refs = cit.run_of_cantos()
    nums = _numbers(text)
    assert [r["canto"] for r in refs] == list(range(nums[0], nums[1] + 1)) and all(r["lines"] == [] for r in refs)
    text, refs = cit.some_cantos()
    assert [r["canto"] for r in refs] == _numbers(text)


def test_words_and_sections_mean_what_the_training_rows_say():
    cit = syn.Citations(random.Random(0))
    seen, sections = {}, {}
    for _ in range(2000):
        text, refs = cit.ends()
        seen[text.split(" of ")[0]] = refs[0]["lines"] if len(refs) == 1 else None
        text, refs = cit.section()
        sections[text] = [r["canto"] for r in refs]
    assert sections["Every Pisan Canto"] == list(range(74, 85)) and sections["the first Canto of Thrones"] == [96]
    assert sections["The last Malatesta Canto"] == [11]
    assert seen["the penultimate line"] == [-2] and seen["the last line"] == [-1]
    assert seen["the first 3 lines"] == [1, 2, 3] and seen["the last three lines"] == [-3, -2, -1]


def test_rows_are_distinct_new_bounded_and_reproducible():
    avoid = frozenset({"Canto LXXXIII"})
    prose = [f"{p} It happened {w} times." for p in PROSE for w in ("two", "three", "four", "five", "six", "seven")]
    rows = syn.synth_rows(prose, 600, seed=3, avoid=avoid)
    assert rows == syn.synth_rows(prose, 600, seed=3, avoid=avoid)
    inputs = [r["input"] for r in rows]
    assert len(set(inputs)) == 600 and not avoid & set(inputs)
    empty = 0
    for r in rows:
        refs = json.loads(r["output"])["references"]
        empty += refs == []
        lines, wholes = syn.size(refs)
        assert lines <= syn.MAX_LINES_PER_ROW and wholes <= syn.MAX_WHOLE_PER_ROW
        assert all(1 <= x["canto"] <= common.MAX_CANTO for x in refs)
    assert 0.05 < empty / 600 < 0.3  # up to one row in five cites nothing (fewer when prose is scarce)


def test_prose_never_mentions_a_canto():
    s = syn.prose_sentences(["Canto II is long. The other sentence is long enough to keep here.", "Short."])
    assert s == ["The other sentence is long enough to keep here."]


def test_files_are_written_from_training_rows_only(tmp_path):
    rows = [
        {"input": f"Plain sentence number {i} about the weather in town.", "output": '{"references": []}'}
        for i in range(60)
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert syn.main([str(data), "--rows", "50", "--out", str(tmp_path / "out")]) == 0
    synth = [json.loads(line) for line in (tmp_path / "out" / "synth.jsonl").read_text().splitlines()]
    train, val = common.train_val(rows)
    test = [r for r in rows if r not in train and r not in val]
    assert len(synth) == 50 and test
    words = {r["input"] for r in test + val}
    assert not any(w in s["input"] for s in synth for w in words)  # test and validation prose unused
    text = (tmp_path / "out" / "synth.txt").read_text()
    assert text.count("### Answer: ") == 50 and text.startswith('### Question: "')


def test_bad_input_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "{\\"references\\": []}"}\n{bad\n')
    for main in (syn.main, aug.main):  # both Cantos data scripts read through lmforge's readers
        with pytest.raises(SystemExit) as e:
            main([str(bad), "--out", str(tmp_path / "o")])
        assert str(e.value).startswith(f"error: {bad}:2: ") and "\n" not in str(e.value)
    with pytest.raises(SystemExit) as e:
        syn.main([str(bad).replace("bad", "absent"), "--out", str(tmp_path / "o")])
    assert str(e.value).startswith("error: data file not found:")
    good = tmp_path / "good.jsonl"
    good.write_text(bad.read_text().splitlines()[0] + "\n")
    with pytest.raises(SystemExit, match="^error: file not found: .*nope.txt$"):
        syn.main([str(good), "--prose", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_the_scripts_run_as_files_from_any_folder(tmp_path):
    """`python examples/cantos/X.py` finds cantos_common beside it: no sys.path edits, no package."""
    import subprocess
    import sys

    from conftest import ROOT

    for script in ("synth_cantos.py", "augment_cantos.py", "make_repeats.py"):
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "cantos" / script), "--help"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
