"""A two-process (DDP on gloo, torchrun) tb run with a learned log Z and a replay buffer resumes exactly: every
process's buffer is saved and given back to it, and the head, outside DDP, stays the same on both (its start
and its gradients averaged): were the processes' heads apart, the one saved by the first would change the
second's losses after the resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.test_rl_log_z import step_values, stop_at_step_2
from tests.test_rl_run import rl_overrides


def _torchrun(args: list[str], port: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    done = subprocess.run([*cmd, "-m", "lmforge.cli", *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_process_tb_with_learned_log_z_and_replay_resumes_exactly(tmp_path, tiny_model_dir):
    over = {"train.max_steps": 4, "train.save_every": 2, "train.eval_every": 4, "train.keep_last": 3}
    args = rl_overrides(tmp_path, "ddp", tiny_model_dir, "tb", **over, **{"rl.log_z": "learned", "rl.replay": 1})
    args = [a for a in args if not a.startswith("rl.rewards")]
    args.append("rl.rewards=[{name: tests.user_plugins:length_reward, weight: 0.1}]")
    cfg = tmp_path / "rl.yaml"
    cfg.write_text("{}\n", encoding="utf-8")
    _torchrun(["rl", str(cfg), *args], 29561)
    whole = tmp_path / "runs" / "ddp"
    saved = json.loads((whole / "checkpoints" / "step-000002" / "data.json").read_text())
    assert len(saved) == 2 and all(s["replay"] for s in saved)  # each process's own buffer
    part = stop_at_step_2(whole, "ddp-resumed")
    _torchrun(["resume", str(part), f"name={part.name}"], 29562)
    want, got = step_values(whole, "loss"), step_values(part, "loss")
    assert sorted(got) == [3, 4] and got == {s: want[s] for s in (3, 4)}
    heads = [load_file(r / "model" / "heads.safetensors") for r in (whole, part)]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
