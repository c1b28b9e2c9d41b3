"""Two processes (DDP on gloo, started by torchrun) equal one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import VERSE


def _losses(run_dir):
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


# AdamW normalises the gradient's scale away; plain SGD with no clipping moves the weights by the gradient
# itself, so a gradient off by the world size (the DDP average of each process's share) shows in the losses.
OPTIMIZERS = {"adamw": [], "sgd": ["train.optimizer=sgd", "train.lr=0.5", "train.grad_clip=0", "train.warmup_steps=0"]}


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_two_process_ddp_matches_one_process(tmp_path, optimizer):
    corpus = tmp_path / "verse.txt"
    corpus.write_text(VERSE * 40, encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    common = [
        f"data.train={corpus}",
        f"out_dir={tmp_path / 'runs'}",
        f"log_dir={tmp_path / 'logs'}",
        "tokenizer.vocab_size=128",
        "model.preset=tiny",
        "model.context=32",
        "train.precision=fp32",
        "train.max_steps=6",
        "train.log_every=1",
        "train.eval_every=3",
        "train.save_every=100",
        "sample.max_new_tokens=4",
        *OPTIMIZERS[optimizer],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", "pretrain", cfg, "name=one", "train.batch_size=8", *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    # the launch command documented in the README
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(29533 + len(optimizer)),
            "-m",
            "lmforge.cli",
            "pretrain",
            cfg,
            "name=two",
            "train.batch_size=4",
            *common,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _losses(tmp_path / "runs" / "one"), _losses(tmp_path / "runs" / "two")
    assert len(a) == len(b) == 6
    assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    assert a[-1] < a[0] - 0.05  # it trained, visibly: a gradient off by 2x would give other losses
    derived = json.loads((tmp_path / "runs" / "two" / "derived.json").read_text())
    assert derived["tokens_per_step"] == 8 * 32  # 2 processes x 4 rows
