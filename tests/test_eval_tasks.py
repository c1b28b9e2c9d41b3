"""Tasks: YAML tasks (the Cantos example's among them), the split, prompts, file:line errors, evaluate_generation."""

from __future__ import annotations

import textwrap

import pytest
from conftest import DATA, ROOT

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import TASKS
from lmforge.scoring.tasks import Task, load_task, read_jsonl, split_rows

CANTOS = str(DATA / "cantos_task.yaml")  # the Cantos task on 12 rows of tests/data
EXAMPLE = ROOT / "examples" / "cantos" / "task.yaml"


def test_a_yaml_task_reads_its_rows_and_splits_deterministically():
    full = load_task(CANTOS)
    test, train = load_task(CANTOS, split="test"), load_task(CANTOS, split="train")
    assert len(full.rows) == 12 and len(test.rows) == 2 and len(train.rows) == 10  # 20% of 12, rounded
    key = lambda rows: [r["input"] for r in rows]
    assert not set(key(test.rows)) & set(key(train.rows))
    assert sorted(key(test.rows) + key(train.rows)) == sorted(key(full.rows))
    assert key(load_task(CANTOS, split="test").rows) == key(test.rows)  # same split every time
    row = {"input": "What is the first line of Canto I?", "output": '{"references": [{"canto": 1, "lines": [1]}]}'}
    assert test.prompt(row) == '### Question: "What is the first line of Canto I?"\n ### Answer: '
    assert test.prompt(row) + test.reference(row) == test.template.format(**row)
    assert full.reference(full.rows[1]) == '{"references": [{"canto": 2, "lines": [4, 5, 6, 7, 8]}]}'
    assert (full.metrics, full.stop, full.reward_metric) == (
        ["json_em", "field_f1", "json_valid", "schema_valid", "exact_match"],
        ["\n", "###"],
        "field_f1",
    )
    assert full.schema["properties"]["references"]["items"]["required"] == ["canto", "lines"]


def test_the_example_task_is_the_test_task_on_other_rows():
    """examples/cantos/task.yaml with --data: the prompt, schema, metrics, stop and reward of tests/data's."""
    ours = load_task(CANTOS)
    example = load_task(str(EXAMPLE), data=str(DATA / "cantos_rows.jsonl"))
    for key in ("name", "rows", "template", "schema", "metrics", "stop", "reward_metric", "input_key", "output_key"):
        assert getattr(example, key) == getattr(ours, key), key
    assert example.score(' {"references": [{"canto": 2, "lines": [4, 5, 6, 7, 8]}]}\n###', example.rows[1]) == 1.0
    assert "cantos" not in TASKS  # the library registers no Cantos task: it is an example


def test_a_bare_name_that_is_no_task_says_what_a_task_is():
    with pytest.raises(LmforgeError, match=r"unknown task 'cantos'; a task is a YAML file \(examples/cantos/task.yaml"):
        load_task("cantos")


def test_cantos_score_is_field_f1_on_the_answer_part():
    task = Task(name="t", rows=[], template="{input} {output}", stop=["\n"], reward_metric="field_f1")
    row = {"input": "q", "output": '{"references": [{"canto": 2, "lines": [1, 2]}]}'}
    assert task.score(' {"references": [{"canto": 2, "lines": [2, 3]}]}\n### Question: x', row) == pytest.approx(2 / 3)
    assert task.score("garbage", row) == 0.0


def test_split_fraction_and_seed():
    rows = list(range(100))
    assert len(split_rows(rows, "test")) == 20
    assert split_rows(rows, "test", seed=1) != split_rows(rows, "test", seed=2)
    with pytest.raises(LmforgeError, match="unknown split"):
        split_rows(rows, "validation")


def test_malformed_rows_name_file_and_line(tmp_path):
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"input": "a", "output": "{}"}\n{"input": "b", "output": \n')
    with pytest.raises(LmforgeError, match=r"t\.jsonl:2: not valid JSON"):
        read_jsonl(bad)
    bad.write_text('{"input": "a", "output": "{}"}\n\n{"input": "b"}\n')
    with pytest.raises(LmforgeError, match=r"t\.jsonl:3: key 'output' must be a string \(missing\)"):
        read_jsonl(bad)
    with pytest.raises(LmforgeError, match="task data not found"):
        load_task(CANTOS, str(tmp_path / "absent.jsonl"))
    with pytest.raises(LmforgeError, match="task file not found"):
        load_task(str(tmp_path / "absent.yaml"))
    bad.write_text('{"input": "a", "output": "{\\"references\\": []}"}\n{"input": "b", "output": "canto 2"}\n')
    with pytest.raises(LmforgeError, match=r"t\.jsonl: example 2: 'output' is not valid JSON \(the task has a sch"):
        load_task(CANTOS, str(bad))  # a reference that is not JSON would score every answer 0


def test_yaml_task(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"q": "2+2", "a": "4"}\n{"q": "été?", "a": "oui"}\n')
    spec = tmp_path / "arith.yaml"
    spec.write_text(
        textwrap.dedent("""\
        name: arith
        data: d.jsonl
        template: "Q: {q}\\nA: {a}"
        input_key: q
        output_key: a
        metrics: [exact_match, rouge1]
        stop: ["\\n"]
    """)
    )
    task = load_task(str(spec))
    assert task.name == "arith" and len(task.rows) == 2 and task.prompt(task.rows[1]) == "Q: été?\nA: "
    assert task.evaluate(["4\nQ: more", "non"], task.rows) == {"exact_match": 0.5, "rouge1": 0.5}
    spec.write_text("data: d.jsonl\nschema: {type: nonsense}\n")
    with pytest.raises(LmforgeError, match="arith.yaml: key 'schema': invalid JSON schema"):
        load_task(str(spec))
    spec.write_text("data: d.jsonl\nmetric: [rouge1]\n")
    with pytest.raises(LmforgeError, match="unknown task key 'metric'"):
        load_task(str(spec))
    spec.write_text("data: d.jsonl\nmetrics: [rouge1]\nreward_metric: rogue1\n")
    with pytest.raises(LmforgeError, match="did you mean 'rouge1'"):
        load_task(str(spec))  # a misspelt reward fails at load, not at the first score()


def test_python_task(tmp_path, monkeypatch):
    (tmp_path / "mytasks.py").write_text(
        textwrap.dedent("""\
        from lmforge.scoring.tasks import Task
        def echo(data=None, split="all"):
            return Task(name="echo", rows=[{"input": "x", "output": "x"}])
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    task = load_task("mytasks:echo")
    assert task.name == "echo" and task.evaluate(["x"], task.rows)["exact_match"] == 1.0


def test_evaluate_generation_constrained_is_always_valid(tiny_model_dir):
    from lmforge.model import load_pretrained, load_tokenizer
    from lmforge.scoring import evaluate_generation

    model, tok = load_pretrained(tiny_model_dir), load_tokenizer(tiny_model_dir)
    rows = [{"input": f"question {i}", "output": '{"references": [{"canto": 2, "lines": [-1]}]}'} for i in range(3)]
    cantos = load_task(CANTOS)
    task = Task(
        name="c",
        rows=rows,
        template=cantos.template,
        schema=cantos.schema,
        metrics=["json_valid", "schema_valid", "field_f1"],
    )
    model.train()
    on = evaluate_generation(model, tok, task, rows, max_new_tokens=40, constrained=True, batch_size=2)
    assert on["json_valid"] == 1.0 and on["schema_valid"] == 1.0 and 0.0 <= on["field_f1"] <= 1.0
    assert model.training and tok.padding_side == "right"  # the training loop's state is given back
    off = evaluate_generation(model, tok, task, rows, max_new_tokens=40, constrained=False, batch_size=2)
    assert set(off) == set(on)
