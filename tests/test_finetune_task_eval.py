"""Best checkpoint by a task metric: the loop scores the validation rows as `lmforge eval` would."""

from __future__ import annotations

import json

import pytest

from lmforge.cli import main

ROWS = [("Canto II, last line", '{"references": [{"canto": 2, "lines": [-1]}]}'),
        ("nothing here", '{"references": []}'),
        ("Canto I, line 1", '{"references": [{"canto": 1, "lines": [1]}]}')]


@pytest.mark.slow
def test_json_em_is_evaluated_and_picks_best(tmp_path, tiny_model_dir):
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in ROWS * 6))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cj\n")
    code = main(["finetune", str(cfg), f"model.base={tiny_model_dir}", "model.preset=null", "model.context=96",
                 f"data.train={data}", "data.format=template", 'data.template=Q: {input}\\nA: {output}',
                 "data.val_fraction=0.2", f"out_dir={tmp_path / 'runs'}", f"log_dir={tmp_path / 'logs'}",
                 "train.precision=fp32", "train.max_steps=6", "train.eval_every=3", "train.batch_size=4",
                 "train.lr=3e-3", "train.eval_task=cantos", "train.eval_max_new_tokens=24",
                 "train.best_metric=field_f1", "sample.max_new_tokens=4"])
    assert code == 0
    run = tmp_path / "runs" / "cj"
    evals = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if "json_em" in l]
    assert [e["step"] for e in evals] == [3, 6]
    assert all(0 <= e["json_em"] <= 1 and 0 <= e["json_valid"] <= 1 for e in evals)
    state = json.loads(next((run / "checkpoints").glob("step-000006/state.json")).read_text())
    best = max(evals, key=lambda e: (e["field_f1"], -e["step"]))  # higher is better; ties keep the earlier
    assert state["best_step"] == best["step"] and state["best"] == best["field_f1"]


def test_the_loop_gives_answers_the_budget_lmforge_eval_gives(monkeypatch, tiny_tokenizer):
    """Unset, train.eval_max_new_tokens is the longest validation answer + 16: a fixed 128 cut right answers."""
    from lmforge.core.config import RunConfig
    from lmforge.data.batches import ExampleBatches
    from lmforge.scoring import answer_budget
    from lmforge.scoring.tasks import load_task
    from lmforge.train import finetune

    long = '{"references": [' + ", ".join(f'{{"canto": {c}, "lines": []}}' for c in range(1, 12)) + "]}"
    rows = [{"input": "Cantos 1-11", "output": long}, {"input": "nothing", "output": '{"references": []}'}]
    seen = {}
    monkeypatch.setattr("lmforge.evaluate.evaluate_generation", lambda *a, **k: seen.update(k) or {})
    val = [{"row": r, "input_ids": [1], "labels": [1]} for r in rows]
    data = ExampleBatches(val, val, layout=None, seed=0, pad_id=0)
    for budget, expected in ((None, answer_budget(tiny_tokenizer, load_task("cantos"), rows)), (24, 24)):
        cfg = RunConfig.model_validate({"name": "b", "train": {"eval_task": "cantos", "eval_max_new_tokens": budget}})
        finetune.task_evaluator(cfg, data, tiny_tokenizer)(model=None, step=0)
        assert seen["max_new_tokens"] == expected
    assert answer_budget(tiny_tokenizer, load_task("cantos"), rows) > 128  # the old fixed budget would cut it
