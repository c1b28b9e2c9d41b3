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
