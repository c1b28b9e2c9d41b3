"""``lmforge eval`` through the real command line: one table in three formats, one-line errors."""

from __future__ import annotations

import csv
import json

from conftest import DATA

from lmforge.cli import main

CANTOS_TASK = str(DATA / "cantos_task.yaml")  # its prompt, schema and metrics; --data gives the rows
CANTOS = '{"input": "%s", "output": "{\\"references\\": [{\\"canto\\": %d, \\"lines\\": [-1]}]}"}\n'


def test_eval_writes_one_table(tiny_model_dir, tmp_path, capsys):
    text = tmp_path / "verse.txt"
    text.write_text("Le vent se lève, il faut tenter de vivre.\n" * 5, encoding="utf-8")
    data = tmp_path / "cantos.jsonl"
    data.write_text("".join(CANTOS % (f"line of canto {i}", i) for i in range(1, 11)))
    out = tmp_path / "report"
    rc = main(
        [
            "eval",
            str(tiny_model_dir),
            str(tiny_model_dir),
            "--text",
            str(text),
            "--task",
            CANTOS_TASK,
            "--data",
            str(data),
            "--split",
            "test",
            "--max-new-tokens",
            "24",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    doc = json.loads((out / "eval.json").read_text())
    rows = {r["model"]: r for r in doc["results"]}
    assert set(rows) == {str(tiny_model_dir), f"{tiny_model_dir} +json"}  # same folder twice: one row
    assert rows[f"{tiny_model_dir} +json"]["json_valid"] == 1.0  # constrained: always valid
    assert rows[str(tiny_model_dir)]["perplexity:verse.txt"] > 1
    assert doc["metrics"]["bits_per_char:verse.txt"]["higher_is_better"] is False
    assert doc["meta"]["examples"] == 2
    header = next(csv.reader((out / "eval.csv").open()))
    assert header[:2] == ["model", "perplexity:verse.txt"] and "json_em" in header
    assert "| model |" in (out / "eval.md").read_text() and "| model |" in capsys.readouterr().out
    comps = [json.loads(line) for line in (out / "completions.jsonl").open()]
    assert len(comps) == 4 and {"prompt", "completion", "reference"} <= set(comps[0])


def test_eval_errors_are_one_line(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("some text\n")
    assert main(["eval", str(tmp_path / "no_model"), "--text", str(text)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lmforge eval: error: ") and "no_model" in err and "\n" not in err
    assert main(["eval", str(tmp_path), "--text", str(tmp_path / "absent.txt")]) == 2
    assert "text file not found" in capsys.readouterr().err
    assert main(["eval", str(tmp_path)]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_unlikeliness_table_through_eval(tmp_path, tiny_model_dir):
    from lmforge.cli import main
    from tests.conftest import VERSE

    text = tmp_path / "held.txt"
    text.write_text(VERSE * 3, encoding="utf-8")
    out = tmp_path / "ev"
    assert (
        main(
            [
                "eval",
                str(tiny_model_dir),
                "--unlikeliness",
                str(tiny_model_dir),
                "--text",
                str(text),
                "--window",
                "32",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = {r["model"]: r for r in json.loads((out / "eval.json").read_text())["results"]}
    assert rows["reference argmax"]["median_rank"] == 0.0 and rows["negated logits"]["median_rank"] == 1.0
    assert rows["negated logits"]["hit@1"] == 1.0  # the negation is the argmin, exactly
    assert rows[str(tiny_model_dir)]["median_rank"] == 0.0  # the reference itself predicts its argmax
