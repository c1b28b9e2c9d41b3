"""Trajectory balance with a learned log Z (rl.log_z: learned), and RL runs that resume exactly.

On a toy problem small enough to enumerate (two prompts, two tokens from a vocabulary of four) the head learns
each prompt's log-partition log sum_y R(x, y) and the policy samples y in proportion to R, through the
registered ``tb`` objective and the loop's optimizer groups. Through the CLI, a run stopped after a checkpoint
and resumed gives the uninterrupted run's losses bit for bit (fp32 CPU): with the head (full fine-tuning and
LoRA) and with the replay buffer, which the checkpoints now keep.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from lmforge.cli import main
from lmforge.core.config import TrainConfig, load_config
from lmforge.core.errors import LmforgeError
from lmforge.core.registry import OBJECTIVES
from lmforge.losses.log_z import LogZHead
from lmforge.train.loop import make_optimizer
from lmforge.train.run import rl
from tests.test_rl_run import metrics, rl_overrides

V = 4  # the vocabulary; a prompt is one token x in {0, 1}, a completion two tokens y1 y2
F_X = torch.tensor([[2.0, 0.0, 0.0, 1.0], [0.0, -1.0, 4.0, 0.0]])  # f_x(y1)
G = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, -2.0]])


def reward(x: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """r(x, y) = f_x(y1) + g(y1, y2): P(y | x) proportional to exp(r) is a (prompt, bigram) policy."""
    return F_X[x, y1] + G[y1, y2]


def log_r_table(x: int) -> torch.Tensor:
    """log R(x, y) for the 16 completions: the uniform reference's log p_ref / T (T = 1) + r (beta = 1)."""
    y1, y2 = torch.arange(V).repeat_interleave(V), torch.arange(V).repeat(V)
    return -2 * math.log(V) + reward(torch.full_like(y1, x), y1, y2)


class PromptBigram(torch.nn.Module):
    """P(y1 | x) from one table, P(y2 | y1) from another; its 'hidden state' is the one-hot token."""

    def __init__(self):
        super().__init__()
        self.first = torch.nn.Parameter(torch.zeros(V, V))
        self.second = torch.nn.Parameter(torch.zeros(V, V))

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False):
        logits = torch.stack([self.first[input_ids[:, 0]], self.second[input_ids[:, 1]]], 1)  # positions 0, 1
        logits = torch.cat([logits, torch.zeros_like(logits[:, :1])], 1)  # (B, 3, V); the last scores nothing
        return SimpleNamespace(logits=logits, hidden_states=(torch.nn.functional.one_hot(input_ids, V).float(),))

    def log_probs(self, x: int) -> torch.Tensor:
        """log P(y | x) of the 16 completions, in log_r_table's order."""
        return (self.first[x].log_softmax(-1).unsqueeze(1) + self.second.log_softmax(-1)).reshape(-1)


def rollout(pol: PromptBigram, k: int, g: torch.Generator) -> dict:
    """K samples of each prompt, as a rollout batch (labels -100 on the prompt)."""
    x = torch.arange(2).repeat_interleave(k)
    with torch.no_grad():
        y1 = torch.multinomial(pol.first[x].softmax(-1), 1, generator=g).squeeze(1)
        y2 = torch.multinomial(pol.second[y1].softmax(-1), 1, generator=g).squeeze(1)
    ids = torch.stack([x, y1, y2], 1)
    labels = ids.clone()
    labels[:, 0] = -100
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
        "rewards": reward(x, y1, y2),
        "completion_start": torch.ones(len(x), dtype=torch.long),
        "group_size": k,
        "num_seqs": len(x),
        "ref_temperature": 1.0,
    }


def test_learned_log_z_converges_to_the_log_partition(one_thread):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pol, head = PromptBigram(), LogZHead(V, lr=0.1)
    heads = {"log_z_head": head}
    opt = make_optimizer(pol, TrainConfig(lr=0.05, weight_decay=0.0), heads)
    assert [grp["lr"] for grp in opt.param_groups] == [0.05, 0.05, 0.1]  # the head's own rate
    tb = OBJECTIVES.get("tb").bind({"reward_scale": 1.0})
    uniform = lambda b: torch.zeros(*b["input_ids"].shape, V)  # the reference: log p_ref(y) = -2 log 4
    for _ in range(800):
        loss, _ = tb(pol, rollout(pol, 16, g), uniform, **heads)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for x in (0, 1):
        true_log_z = torch.logsumexp(log_r_table(x), 0).item()  # by enumeration of the 16 completions
        state = torch.nn.functional.one_hot(torch.tensor([x]), V).float()
        with torch.no_grad():
            learned = head(state, torch.zeros(1)).item()
            target = log_r_table(x).log_softmax(0)
            kl = (target.exp() * (target - pol.log_probs(x))).sum().item()
        assert abs(learned - true_log_z) < 0.1, (x, learned, true_log_z)
        assert kl < 0.05, (x, kl)  # the fixed point still samples y in proportion to R(x, y)
    # the two prompts' partitions differ by more than the tolerance: the head conditions on the prompt
    assert abs(torch.logsumexp(log_r_table(0), 0) - torch.logsumexp(log_r_table(1), 0)) > 0.5


def test_head_starts_at_the_first_estimate_and_only_then():
    head = LogZHead(3, lr=0.1)
    states = torch.randn(4, 3)
    out = head(states, torch.tensor([-10.0, -12.0, -11.0, -15.0]))
    assert out.tolist() == pytest.approx([-12.0] * 4)  # b = the mean estimate; w = 0
    assert head(states, torch.tensor([5.0] * 4)).tolist() == pytest.approx([-12.0] * 4)  # started: kept
    assert bool(head.state_dict()["started"])


def test_log_z_learned_is_for_tb_only():
    for algorithm in ("rloo", "grpo", "subtb", "dpo"):
        with pytest.raises(LmforgeError, match=r"rl.log_z: learned is for rl.algorithm=tb") as e:
            load_config(None, [f"rl.algorithm={algorithm}", "rl.log_z=learned"])
        assert "\n" not in str(e.value)
    assert load_config(None, ["rl.algorithm=tb", "rl.log_z=learned"]).rl.log_z == "learned"


def stop_at_step_2(whole: Path, name: str) -> Path:
    """A copy of a finished 4-step run as a kill right after its step-2 checkpoint would leave it."""
    part = whole.parent / name
    shutil.copytree(whole, part, symlinks=True)
    shutil.rmtree(part / "checkpoints" / "step-000004")
    shutil.rmtree(part / "model")
    (part / "checkpoints" / "latest").write_text("step-000002\n", encoding="utf-8")
    (part / "metrics.jsonl").unlink()
    return part


def step_values(run: Path, key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in metrics(run) if key in r}


@pytest.mark.parametrize(
    "name, extra",
    [
        ("learned-full", {"rl.log_z": "learned"}),
        ("learned-lora", {"rl.log_z": "learned", "lora.method": "lora", "lora.r": 4}),
        ("replay", {"rl.replay": 1}),
    ],
)
def test_resumed_tb_run_equals_the_uninterrupted_one(tmp_path, tiny_model_dir, one_thread, name, extra):
    over = {"train.max_steps": 4, "train.save_every": 2, "train.eval_every": 4, "train.keep_last": 3, **extra}
    args = rl_overrides(tmp_path, name, tiny_model_dir, "tb", **over, **{"train.best_metric": "reward"})
    args = [a for a in args if not a.startswith("rl.rewards")]
    args.append("rl.rewards=[{name: tests.user_plugins:length_reward, weight: 0.1}]")  # spread: replay matters
    whole = rl(load_config(None, args), quiet=True)
    part = stop_at_step_2(whole, f"{name}-resumed")
    assert main(["resume", str(part), f"name={part.name}"]) == 0
    want, got = step_values(whole, "loss"), step_values(part, "loss")
    assert sorted(got) == [3, 4] and got == {s: want[s] for s in (3, 4)}  # bit for bit
    assert step_values(part, "rollout/reward") == {s: step_values(whole, "rollout/reward")[s] for s in (3, 4)}
    if "rl.log_z" in extra:  # the head is in every checkpoint and beside the final weights
        heads = [load_file(r / "model" / "heads.safetensors") for r in (whole, part)]
        assert heads[0].keys() == heads[1].keys() and all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
        assert bool(heads[0]["log_z_head.started"])
        assert (whole / "checkpoints" / "step-000002" / "heads.safetensors").is_file()
        assert load_file(whole / "best" / "heads.safetensors").keys() == heads[0].keys()  # best/ as model/
    if "rl.replay" in extra:
        saved = json.loads((whole / "checkpoints" / "step-000002" / "data.json").read_text())
        assert len(saved) == 1 and saved[0]["replay"]  # one process; its buffer holds sequences


def test_resume_with_another_log_z_setting_is_one_line(tmp_path, tiny_model_dir, one_thread):
    over = {"train.max_steps": 2, "train.save_every": 2, "train.eval_every": 2, "rl.log_z": "learned"}
    whole = rl(load_config(None, rl_overrides(tmp_path, "switch", tiny_model_dir, "tb", **over)), quiet=True)
    other = rl_overrides(tmp_path, "switch", tiny_model_dir, "tb", **{**over, "train.max_steps": 4})
    with pytest.raises(LmforgeError, match="rl.log_z: learned"):
        rl(load_config(None, [*other, "rl.log_z=vargrad"]), resume=True)
    assert whole.is_dir()
