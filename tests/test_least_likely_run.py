"""A least-likely fine-tune through the real loop: objective_args reach the objective, the reference is
the adapter-disabled base, and the unlikeliness measurements reach metrics.jsonl and TensorBoard."""

from __future__ import annotations

import json

import pytest

from lmforge.cli import main
from lmforge.core.errors import LmforgeError
from tests.conftest import VERSE


def _args(tmp_path, base, *extra):
    text = tmp_path / "t.txt"
    text.write_text(VERSE * 30, encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: ll\n")
    return [
        str(cfg),
        f"model.base={base}",
        "model.preset=null",
        "model.context=32",
        f"data.train={text}",
        f"out_dir={tmp_path / 'runs'}",
        f"log_dir={tmp_path / 'logs'}",
        "lora.method=lora",
        "lora.r=4",
        "train.objective=least_likely_hard",
        "train.precision=fp32",
        "train.max_steps=4",
        "train.eval_every=2",
        "train.batch_size=4",
        "train.lr=1e-2",
        "sample.max_new_tokens=4",
        *extra,
    ]


@pytest.mark.slow
def test_least_likely_finetune_logs_unlikeliness(tmp_path, tiny_model_dir):
    assert main(["finetune", *_args(tmp_path, tiny_model_dir, "train.objective_args={well_formed: true}")]) == 0
    rows = [json.loads(ln) for ln in (tmp_path / "runs" / "ll" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "unlikely/median_rank" in r]
    assert len(evals) == 2 and all(0 <= r["unlikely/median_rank"] <= 1 for r in evals)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "logs" / "ll"))
    acc.Reload()
    assert "eval/unlikely/median_rank" in acc.Tags()["scalars"]


def test_unknown_objective_arg_is_named(tmp_path, tiny_model_dir):
    with pytest.raises(LmforgeError, match="least_likely_hard takes no 'well_formd'; did you mean 'well_formed'"):
        from lmforge.core.config import load_config
        from lmforge.train.run import finetune

        a = _args(tmp_path, tiny_model_dir, "train.objective_args={well_formd: true}")
        finetune(load_config(a[0], a[1:]))
