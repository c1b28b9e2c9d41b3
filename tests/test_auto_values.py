"""train.batch_size: auto fits under a (fake) memory limit and keeps the global batch; train.lr: auto finds the
rates that train a tiny model well."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from lmforge.core.config import ModelConfig, load_config
from lmforge.core.errors import LmforgeError
from lmforge.data.batches import Layout, PackedStream
from lmforge.model import build_model
from lmforge.train import auto
from lmforge.train.auto import fit_micro_batch, range_lrs, range_test, resolve_batch_size, smooth, steepest, step_bytes
from lmforge.train.loop import train
from lmforge.train.run import make_accelerator
from tests.conftest import VERSE


def test_fit_takes_the_largest_divisor_under_the_margin_and_stops_probing():
    probed = []

    def need(b):
        probed.append(b)
        return 100 + 10 * b

    # 80% of 190 = 152: 4 rows need 140, 8 rows 180
    assert fit_micro_batch(need, 16, 190)[0] == 4
    assert probed == [1, 2, 4, 8]  # 16 is never tried
    assert fit_micro_batch(lambda b: 100 + 10 * b, 12, 1000)[0] == 12
    assert fit_micro_batch(lambda b: 100 + 10 * b, 12, 190)[0] == 4  # 6 needs 160 > 152
    with pytest.raises(Exception, match="one sequence needs"):
        fit_micro_batch(need, 16, 100)


def test_batch_auto_stays_under_a_fake_limit_and_keeps_the_global_batch(tiny_tokenizer, one_thread, monkeypatch):
    monkeypatch.setattr(auto, "process_memory", lambda device: 500 * 2**20)  # a fake process beside the fake limit
    model = build_model(ModelConfig(preset="tiny", context=512), tiny_tokenizer, seed=0)
    cfg = load_config(None, ["train.batch_size=auto", "train.global_batch_size=32", "train.precision=fp32"])
    acc = make_accelerator(cfg, "no")
    need = {b: step_bytes(model, b, 512, "adamw", acc.device, acc.autocast, 500 * 2**20) for b in (4, 8)}
    assert need[8] - need[4] > 8 * 2**20  # activations, not noise, decide between them
    limit = (need[4] + need[8]) / 2 / 0.8  # 4 rows fit under the margin, 8 do not
    cfg.train.memory_limit_gb = limit / 2**30
    fit = resolve_batch_size(cfg, model, 512, acc)
    assert (cfg.train.batch_size, cfg.train.grad_accum) == (4, 8) == (fit["batch_size"], fit["grad_accum"])
    assert fit["needs"][4] <= 0.8 * limit < fit["needs"][8]


@pytest.mark.slow
def test_batch_auto_run_never_exceeds_the_limit(tmp_path):
    """A real run in its own process: its peak resident memory stays under the limit batch_size: auto was given."""
    text = tmp_path / "verse.txt"
    text.write_text(VERSE * 400, encoding="utf-8")
    limit_gb = 1.0
    args = [f"data.train={text}", f"out_dir={tmp_path}", "model.preset=tiny", "model.context=512"]
    args += ["tokenizer.vocab_size=128", "train.batch_size=auto", "train.global_batch_size=64", "train.eval_batches=1"]
    args += [f"train.memory_limit_gb={limit_gb}", "train.max_steps=2", "train.precision=fp32", "train.report_to=none"]
    (tmp_path / "c.yaml").write_text("name: auto\nsample: {max_new_tokens: 4}\n")
    r = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", "pretrain", str(tmp_path / "c.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in (tmp_path / "auto" / "metrics.jsonl").read_text().splitlines()]
    peak = max(r.get("peak_rss_mb", 0) for r in rows) * 2**20  # the run's own peak resident memory
    chosen = load_config(tmp_path / "auto" / "config.yaml").train
    assert "batch_size: auto ->" in r.stdout and chosen.batch_size * chosen.grad_accum == 64
    assert 1 < chosen.batch_size < 64  # the limit bound the choice: neither trivial nor everything
    assert 0 < peak < limit_gb * 2**30, (peak / 2**30, chosen.batch_size)


def test_steepest_finds_the_fall_of_a_known_curve():
    lrs = range_lrs(1e-6, 1.0, 61)
    # falls fastest at 1e-3 (tanh's steepest point), diverges above 1e-1
    curve = [5 - 2 * math.tanh(2 * (math.log10(lr) + 3)) + (0 if lr < 0.1 else 100 * (lr - 0.1)) for lr in lrs]
    chosen = steepest(lrs, curve)
    assert 10**-3.2 < chosen < 10**-2.8
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # bias-corrected: no pull towards 0


def _tiny_run(tmp_path, tok, name, lr, steps=40):
    cfg = load_config(
        None,
        [
            f"name={name}",
            f"out_dir={tmp_path}",
            f"log_dir={tmp_path / 'logs'}",
            "train.precision=fp32",
            f"train.lr={lr}",
            "train.warmup_steps=0",
            f"train.max_steps={steps}",
            "train.eval_every=1000",
            "train.save_every=1000",
            "train.report_to=none",
            "train.lr_scheduler=constant",
        ],
    )
    model = build_model(ModelConfig(preset="tiny", context=32), tok, seed=0)
    ids = torch.tensor(tok(VERSE * 20, add_special_tokens=False)["input_ids"])
    data = PackedStream(ids, ids[:200], 32, Layout(8, 1), seed=0)
    return cfg, model, data


@pytest.mark.slow
def test_range_test_finds_the_good_region_of_a_tiny_model(tmp_path, tiny_tokenizer, one_thread):
    grid = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
    final = {}
    for lr in grid:  # the known answer: 40 steps at each rate, mean loss of the last 10
        cfg, model, data = _tiny_run(tmp_path, tiny_tokenizer, f"lr{lr}", lr)
        losses = train(cfg, model, tiny_tokenizer, data, accelerator=make_accelerator(cfg)).losses
        final[lr] = sum(losses[-10:]) / 10
    best = min(final.values())
    good = [lr for lr in grid if final[lr] <= best + 0.1 * (final[grid[0]] - best)]
    cfg, model, data = _tiny_run(tmp_path, tiny_tokenizer, "range", "auto")
    before = [p.detach().clone() for p in model.parameters()]
    result = range_test(cfg, model, tiny_tokenizer, data, make_accelerator(cfg, "no"))
    assert min(good) / 3 <= result["lr"] <= max(good) * 3, (result["lr"], final)
    assert final[min(grid, key=lambda lr: abs(math.log(lr / result["lr"])))] < final[grid[0]]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the weights are put back
    assert len(result["losses"]) < 60 or max(result["losses"]) > 0  # stopped at divergence or ran its course
    json.dumps(result)  # saved as JSON with the run


def test_max_steps_auto_fills_the_budget_at_the_measured_step_time(tmp_path, tiny_tokenizer, one_thread, monkeypatch):
    cfg, model, data = _tiny_run(tmp_path, tiny_tokenizer, "steps", 1e-3)
    cfg.train.max_steps = "auto"
    with pytest.raises(Exception, match="needs train.max_time_s"):
        auto.steps_in_budget(cfg, model, tiny_tokenizer, data, make_accelerator(cfg, "no"))
    cfg.train.max_time_s = 30.0
    real = auto.steps_in_budget(cfg, model, tiny_tokenizer, data, make_accelerator(cfg, "no"))
    assert real["max_steps"] == int(30.0 / real["step_s"]) and real["step_s"] > 0
    # the first step (warm-up) is left out, the median of the rest taken
    monkeypatch.setattr(auto, "trial_steps", lambda *a, **k: ([0.0] * 6, [9.0, 0.5, 0.4, 0.6, 0.5, 3.0]))
    assert auto.steps_in_budget(cfg, model, tiny_tokenizer, data, None)["max_steps"] == 60


def test_data_preview_chooses_batch_size_auto_as_a_run(tmp_path, tiny_model_dir, one_thread, monkeypatch, capsys):
    """The preview's choice, its padding figure and a real run's choice agree under one (fake) memory limit."""
    from lmforge.cli import main
    from lmforge.data.preview import preview_data
    from lmforge.train.batch_choice import choose_batch_size

    monkeypatch.setattr(auto, "process_memory", lambda device: 500 * 2**20)  # the same process, probe after probe
    rows = [{"instruction": f"Say {i}.", "input": "", "output": "The sea " * (1 + i % 9)} for i in range(40)]
    data = tmp_path / "rows.json"
    data.write_text(json.dumps(rows), encoding="utf-8")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        f"name: auto\nout_dir: {tmp_path / 'runs'}\nlog_dir: {tmp_path / 'logs'}\n"
        f"model: {{base: {tiny_model_dir}, context: 128}}\ndata: {{train: {data}, format: alpaca}}\n"
        "train: {batch_size: auto, global_batch_size: 8, precision: fp32, max_steps: 1, report_to: none}\n"
        "sample: {max_new_tokens: 2, every: 1000}\n",
        encoding="utf-8",
    )
    with pytest.raises(LmforgeError, match="batch_size=auto: decide it first"):
        preview_data(load_config(cfg_file))  # the library call says what to do; the command decides it
    roomy = load_config(cfg_file, ["train.memory_limit_gb=1000"])
    needs = choose_batch_size(roomy)["needs"]
    assert (roomy.train.batch_size, roomy.train.grad_accum, sorted(needs)) == (8, 1, [1, 2, 4, 8])
    limit = f"train.memory_limit_gb={(needs[2] + needs[4]) / 2 / 0.8 / 2**30}"  # 2 rows fit under the margin, 4 not

    assert main(["data", "preview", str(cfg_file), limit]) == 0
    out = capsys.readouterr().out
    assert "note: batch_size: auto -> 2 x grad_accum 4 (global 8)" in out and "padding: batches of 2 " in out
    assert main(["finetune", str(cfg_file), limit]) == 0
    assert "batch_size: auto -> 2 x grad_accum 4 (global 8)" in capsys.readouterr().out


def test_rl_refuses_batch_size_auto_in_one_line(tiny_model_dir):
    from lmforge.train.run import rl

    args = [f"model.base={tiny_model_dir}", "rl.algorithm=rloo", "rl.prompts=[The]", "train.batch_size=auto"]
    cfg = load_config(None, [*args, "rl.rewards=[{name: json_valid}]", "rl.num_generations=3"])
    with pytest.raises(LmforgeError, match=r"set the prompts per micro-batch \(each one is rl.num_generations=3 "):
        rl(cfg)  # before anything is loaded
