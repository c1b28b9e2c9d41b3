"""Two processes (DDP on gloo, started by torchrun) equal one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import VERSE


def _losses(run_dir):
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    corpus = tmp_path / "verse.txt"
    corpus.write_text(VERSE * 40, encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    common = [f"data.train={corpus}", f"out_dir={tmp_path / 'runs'}", f"log_dir={tmp_path / 'logs'}",
              "tokenizer.vocab_size=128", "model.preset=tiny", "model.context=32", "train.precision=fp32",
              "train.max_steps=6", "train.log_every=1", "train.eval_every=3", "train.save_every=100",
              "sample.max_new_tokens=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    one = subprocess.run([sys.executable, "-m", "lmforge.cli", "pretrain", cfg, "name=one", "train.batch_size=8",
                          *common], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    # the launch command documented in the README
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29533", "-m", "lmforge.cli", "pretrain", cfg, "name=two", "train.batch_size=4", *common],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = _losses(tmp_path / "runs" / "one"), _losses(tmp_path / "runs" / "two")
    assert len(a) == len(b) == 6
    assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    assert a[-1] != a[0]  # it trained
    derived = json.loads((tmp_path / "runs" / "two" / "derived.json").read_text())
    assert derived["tokens_per_step"] == 8 * 32  # 2 processes x 4 rows
