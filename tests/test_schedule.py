"""The learning-rate schedule against values computed by hand, in isolation and as the loop applies it."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lmforge.train.schedule import make_scheduler

# warmup 4, 12 steps, floor 0.25: lr(s) = s/4 for s < 4, then 0.25 + 0.75 * (1 + cos(pi * (s - 4) / 8)) / 2
HAND = [0.0, 0.25, 0.5, 0.75, 1.0]
HAND += [0.25 + 0.75 * (1 + math.cos(math.pi * k / 8)) / 2 for k in range(1, 9)]  # steps 5..12


def _rates(warmup, total, floor, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = make_scheduler(opt, warmup, total, floor)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_to_the_floor_by_hand():
    got = _rates(4, 12, 0.25, 13)
    assert got == pytest.approx([2.0 * h for h in HAND], abs=1e-12)
    assert got[0] == 0.0 and got[4] == 2.0  # warmup ends exactly at step 4, at the full rate
    assert got[12] == pytest.approx(2.0 * 0.25)  # the floor, min_lr_ratio x lr, at max_steps
    assert got[8] == pytest.approx(2.0 * (0.25 + 0.75 / 2))  # halfway down the cosine


def test_no_warmup_starts_at_the_full_rate_and_floor_zero_reaches_zero():
    got = _rates(0, 10, 0.0, 11)
    assert got[0] == 2.0
    assert got[5] == pytest.approx(1.0)
    assert got[10] == pytest.approx(0.0, abs=1e-12)


def test_the_loop_steps_with_the_scheduled_rate(tmp_path, tiny_tokenizer):
    """metrics.jsonl records, at each step, the rate that step was taken with: the hand values again."""
    from lmforge.core.config import ModelConfig, load_config
    from lmforge.data.batches import Layout, PackedStream
    from lmforge.model import build_model
    from lmforge.train.loop import train
    from lmforge.train.run import make_accelerator
    from tests.conftest import VERSE

    cfg = load_config(None, [f"out_dir={tmp_path}", "name=lr", f"log_dir={tmp_path / 'logs'}", "train.precision=fp32",
                             "train.lr=2.0", "train.optimizer=sgd", "train.warmup_steps=4", "train.max_steps=12",
                             "train.min_lr_ratio=0.25", "train.log_every=1", "train.eval_every=100",
                             "train.save_every=100", "train.batch_size=2"])
    ids = torch.tensor(tiny_tokenizer(VERSE * 4, add_special_tokens=False)["input_ids"])
    model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
    train(cfg, model, tiny_tokenizer, PackedStream(ids, ids[:64], 16, Layout(2, 1), 0), accelerator=make_accelerator(cfg))
    rows = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if "lr" in r]
    assert lrs == pytest.approx([2.0 * h for h in HAND[:12]], abs=1e-9)
