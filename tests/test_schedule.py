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


def _tc(**kw):
    from lmforge.core.config import TrainConfig

    return TrainConfig(lr=2.0, **kw)


def _rates(warmup, total, floor, steps, clock=None, **kw):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = make_scheduler(opt, _tc(warmup_steps=warmup, max_steps=total, min_lr_ratio=floor, **kw), clock)
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

    cfg = load_config(
        None,
        [
            f"out_dir={tmp_path}",
            "name=lr",
            f"log_dir={tmp_path / 'logs'}",
            "train.precision=fp32",
            "train.lr=2.0",
            "train.optimizer=sgd",
            "train.warmup_steps=4",
            "train.max_steps=12",
            "train.min_lr_ratio=0.25",
            "train.log_every=1",
            "train.eval_every=100",
            "train.save_every=100",
            "train.batch_size=2",
        ],
    )
    ids = torch.tensor(tiny_tokenizer(VERSE * 4, add_special_tokens=False)["input_ids"])
    model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
    train(
        cfg, model, tiny_tokenizer, PackedStream(ids, ids[:64], 16, Layout(2, 1), 0), accelerator=make_accelerator(cfg)
    )
    rows = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if "lr" in r]
    assert lrs == pytest.approx([2.0 * h for h in HAND[:12]], abs=1e-9)


def test_linear_constant_and_wsd_by_hand():
    lin = _rates(2, 10, 0.2, 11, lr_scheduler="linear")
    assert lin == pytest.approx([2.0 * x for x in [0, 0.5] + [0.2 + 0.8 * (10 - s) / 8 for s in range(2, 11)]])
    assert _rates(2, 10, 0.2, 6, lr_scheduler="constant") == pytest.approx([0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    # wsd: warmup 2, then 8 steps of which the last decay_ratio=0.25 (2 steps) decay by cosine to the floor
    wsd = _rates(2, 10, 0.2, 11, lr_scheduler="wsd", decay_ratio=0.25)
    # transformers' wsd warms up from the floor, not from 0
    hand = (
        [0.2, 0.5 * 0.8 + 0.2] + [1.0] * 6 + [0.2 + 0.8 * (1 + math.cos(math.pi * k / 2)) / 2 for k in (0, 1)] + [0.2]
    )
    assert wsd == pytest.approx([2.0 * x for x in hand])


def test_warmup_ratio_replaces_warmup_steps():
    assert _rates(50, 20, 0.0, 3, warmup_ratio=0.1) == pytest.approx([0.0, 1.0, 2.0])  # 10% of 20 = 2 steps


def test_with_a_time_budget_the_rate_follows_the_clock_to_its_floor():
    """A fake clock: the machine gets through 4 of 100 steps per second of a 10 s budget, so the budget ends
    at step 40; the rate is at its floor there, not at step 100."""
    now = {"t": 0.0}
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = make_scheduler(opt, _tc(warmup_steps=0, max_steps=100, min_lr_ratio=0.1, max_time_s=10.0), lambda: now["t"])
    rates = {}
    for step in range(41):
        rates[step] = opt.param_groups[0]["lr"]
        opt.step()
        now["t"] = (step + 1) / 4.0  # seconds after step+1 steps
        sched.step()
    assert rates[0] == pytest.approx(2.0)
    assert rates[20] == pytest.approx(2.0 * (0.1 + 0.9 * (1 + math.cos(math.pi * 0.5)) / 2))  # half the budget
    assert rates[40] == pytest.approx(2.0 * 0.1)  # the budget's end: the floor, 60 steps before max_steps
    # by steps alone (no budget) step 40 would still be high
    assert _rates(0, 100, 0.1, 41)[40] > 1.3
    # lr_follows_time: false keeps the schedule on steps under the same clock
    kept = _rates(0, 100, 0.1, 41, clock=lambda: 1e9, max_time_s=10.0, lr_follows_time=False)
    assert kept == pytest.approx(_rates(0, 100, 0.1, 41))


def test_epochs_set_the_step_count(tmp_path, tiny_model_dir):
    """The run's steps are ceil(epochs x training rows / rows per step), whatever max_steps says."""
    import json

    from lmforge.core.config import load_config
    from lmforge.train.run import finetune

    rows = [{"prompt": f"q{i} ", "completion": f"a{i}"} for i in range(12)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(
        None,
        [
            f"out_dir={tmp_path}",
            "name=ep",
            f"log_dir={tmp_path / 'logs'}",
            f"model.base={tiny_model_dir}",
            f"data.train={data}",
            "data.format=prompt_completion",
            "data.val_fraction=0.25",
            "train.batch_size=2",
            "train.epochs=1.5",
            "train.max_steps=999",
            "train.precision=fp32",
            "train.eval_every=100",
            "train.save_every=100",
            "train.log_every=1",
        ],
    )
    run = finetune(cfg, quiet=True)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps[-1] == 7  # 9 training rows (3 held out) x 1.5 epochs / 2 per step = 6.75 -> 7
