"""Best checkpoint by a task metric: the loop scores the validation rows as `lmforge eval` would."""

from __future__ import annotations

import json

import pytest
from conftest import DATA

from lmforge.cli import main

CANTOS_TASK = DATA / "cantos_task.yaml"  # the task's prompt and metrics; its rows are the run's validation rows

ROWS = [
    ("Canto II, last line", '{"references": [{"canto": 2, "lines": [-1]}]}'),
    ("nothing here", '{"references": []}'),
    ("Canto I, line 1", '{"references": [{"canto": 1, "lines": [1]}]}'),
]


@pytest.mark.slow
def test_json_em_is_evaluated_and_picks_best(tmp_path, tiny_model_dir):
    data = tmp_path / "c.jsonl"
    data.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in ROWS * 6))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cj\n")
    code = main(
        [
            "finetune",
            str(cfg),
            f"model.base={tiny_model_dir}",
            "model.preset=null",
            "model.context=96",
            f"data.train={data}",
            "data.format=template",
            "data.template=Q: {input}\\nA: {output}",
            "data.val_fraction=0.2",
            f"out_dir={tmp_path / 'runs'}",
            f"log_dir={tmp_path / 'logs'}",
            "train.precision=fp32",
            "train.max_steps=6",
            "train.eval_every=3",
            "train.batch_size=4",
            "train.lr=3e-3",
            f"train.eval_task={CANTOS_TASK}",
            "train.eval_max_new_tokens=24",
            "train.best_metric=field_f1",
            "sample.max_new_tokens=4",
        ]
    )
    assert code == 0
    run = tmp_path / "runs" / "cj"
    evals = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if "json_em" in ln]
    assert [e["step"] for e in evals] == [3, 6]
    assert all(0 <= e["json_em"] <= 1 and 0 <= e["json_valid"] <= 1 for e in evals)
    state = json.loads(next((run / "checkpoints").glob("step-000006/state.json")).read_text())
    best = max(evals, key=lambda e: (e["field_f1"], -e["step"]))  # higher is better; ties keep the earlier
    assert state["best_step"] == best["step"] and state["best"] == best["field_f1"]


def _whitespace_tokenizer():
    """One token per whitespace-separated chunk: an answer's token count is its number of chunks."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_the_loop_gives_answers_the_budget_lmforge_eval_gives(monkeypatch):
    """Unset, train.eval_max_new_tokens is the longest validation answer in tokens + 16; set, it wins."""
    from lmforge.core.config import RunConfig
    from lmforge.data.batches import ExampleBatches
    from lmforge.train import finetune

    # 40 whole cantos: '{"references":', then per canto '[{"canto":' (or '{"canto":'), 'N,', '"lines":' and
    # '[]},' (or '[]}]}'): 1 + 4 * 40 = 161 chunks, 161 tokens; the old fixed budget of 128 would cut it
    long = '{"references": [' + ", ".join(f'{{"canto": {c}, "lines": []}}' for c in range(1, 41)) + "]}"
    short = '{"references": []}'  # 2 tokens
    rows = [{"input": "Cantos 1-40", "output": long}, {"input": "nothing", "output": short}]
    seen = []
    monkeypatch.setattr(finetune, "evaluate_generation", lambda *a, **k: seen.append(k["max_new_tokens"]) or {})
    val = [{"row": r, "input_ids": [1], "labels": [1]} for r in rows]
    data = ExampleBatches(val, val, layout=None, seed=0, pad_id=0)
    tokenizer = _whitespace_tokenizer()
    for budget in (None, 24, 400):
        cfg = RunConfig.model_validate(
            {"name": "b", "train": {"eval_task": str(CANTOS_TASK), "eval_max_new_tokens": budget}}
        )
        finetune.task_evaluator(cfg, data, tokenizer)(model=None, step=0)
    assert seen == [161 + 16, 24, 400]
    cfg = RunConfig.model_validate({"name": "b", "train": {"eval_task": str(CANTOS_TASK)}})
    finetune.task_evaluator(cfg, ExampleBatches(val, val[::-1], layout=None, seed=0, pad_id=0), tokenizer)(None, 0)
    assert seen[-1] == 177  # the longest answer, wherever it stands
