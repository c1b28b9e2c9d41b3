"""``lmforge rl`` end to end on a tiny Llama: rollouts through the one loop (RLOO, GRPO, TB, SubTB), DPO on pair
files, each reward component logged, the reference under LoRA left untouched, resume, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lmforge.cli import main
from lmforge.core.config import load_config
from lmforge.core.errors import LmforgeError
from lmforge.train.run import rl

pytestmark = pytest.mark.usefixtures("one_thread")


def rl_overrides(tmp_path: Path, name: str, base, algorithm: str, **extra) -> list[str]:
    over = {
        "name": name,
        "out_dir": tmp_path / "runs",
        "log_dir": tmp_path / "logs",
        "model.base": base,
        "train.precision": "fp32",
        "train.batch_size": 2,
        "train.max_steps": 3,
        "train.warmup_steps": 0,
        "train.lr": 1e-3,
        "train.eval_every": 3,
        "train.save_every": 2,
        "train.log_every": 1,
        "train.report_to": "none",
        "sample.every": 100000,
        "sample.max_new_tokens": 4,
        "rl.algorithm": algorithm,
        "rl.prompts": "[The, Le vent, A, Shall]",
        "rl.eval_prompts": 1,
        "rl.num_generations": 3,
        "rl.max_new_tokens": 8,
        "rl.rewards": "[{name: json_valid, weight: 1.0}, {name: tests.user_plugins:length_reward, weight: 0.01}]",
        **extra,
    }
    return [f"{k}={v}" for k, v in over.items()]


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("algorithm", ["rloo", "grpo", "tb", "subtb"])
def test_rl_cli_runs_each_algorithm_and_logs_each_reward(tmp_path, tiny_model_dir, algorithm, capsys):
    args = rl_overrides(tmp_path, algorithm, tiny_model_dir, algorithm)
    if algorithm == "tb":
        args += ["rl.ref_temperature=2.0", "rl.ref_temperature_end=1.0", "rl.reuse=2"]
    twice = algorithm == "grpo"  # one reward declared twice, the second under its own label
    if twice:
        args += ["rl.rewards=[{name: json_valid, weight: 1.0}, {name: tests.user_plugins:length_reward, weight: 0.01},"
                 " {name: tests.user_plugins:length_reward, weight: 0.02, label: longer}]"]  # fmt: skip
    assert main(["rl", str(write_empty(tmp_path)), *args]) == 0
    run = tmp_path / "runs" / algorithm
    rows = metrics(run)
    rollout = [r for r in rows if "rollout/reward" in r]
    assert [r["step"] for r in rollout] == [1, 2, 3]
    for r in rollout:
        # the total is the weighted sum of the logged components
        want = r["rollout/reward/json_valid"] + 0.01 * r["rollout/reward/tests.user_plugins:length_reward"]
        if twice:
            assert r["rollout/reward/longer"] == r["rollout/reward/tests.user_plugins:length_reward"]
            want += 0.02 * r["rollout/reward/longer"]
        assert r["rollout/reward"] == pytest.approx(want, rel=1e-5)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows if "loss" in r)
    evals = [r for r in rows if "reward/json_valid" in r]
    assert evals and evals[-1]["step"] == 3 and "sample_distinct_2" in evals[-1]
    assert (run / "model" / "config.json").is_file()
    assert (run / "checkpoints" / "step-000003" / "state.json").is_file()


def write_empty(tmp_path: Path) -> Path:
    p = tmp_path / "rl.yaml"
    p.write_text("{}\n", encoding="utf-8")
    return p


def test_rl_under_lora_keeps_the_reference_and_resumes(tmp_path, tiny_model_dir):
    args = rl_overrides(tmp_path, "lora", tiny_model_dir, "rloo", **{"lora.method": "lora", "lora.r": 4})
    cfg = load_config(None, args + ["train.max_steps=2"])
    run = rl(cfg, quiet=True)
    first = [r for r in metrics(run) if "rollout/reward" in r]
    assert [r["step"] for r in first] == [1, 2]
    assert (run / "model" / "adapter_config.json").is_file()  # only the adapter was trained and saved
    # resume through the CLI with a longer run: steps 3 and 4 follow the saved step 2
    assert main(["resume", str(run), "train.max_steps=4"]) == 0
    steps = [r["step"] for r in metrics(run) if "rollout/reward" in r]
    assert steps == [1, 2, 3, 4]


def test_dpo_from_pairs_file(tmp_path, tiny_model_dir):
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Q{i}: ", "chosen": "yes indeed", "rejected": "no"} for i in range(8)]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = rl_overrides(tmp_path, "dpo", tiny_model_dir, "dpo", **{"data.train": pairs, "data.val_fraction": 0.25})
    args = [a for a in args if not a.startswith(("rl.prompts", "rl.rewards"))]
    cfg = load_config(None, args + ["train.max_steps=4", "train.eval_every=4", "rl.dpo_beta=0.5", "train.lr=5e-3"])
    run = rl(cfg, quiet=True)
    rows = metrics(run)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start: -log sigmoid(0)
    assert losses[-1] < losses[0]
    assert any("val_loss" in r for r in rows)


def test_rl_errors_are_one_line(tmp_path, tiny_model_dir):
    base = rl_overrides(tmp_path, "bad", tiny_model_dir, "rloo")
    with pytest.raises(LmforgeError, match="rl.algorithm"):
        rl(load_config(None, [a for a in base if not a.startswith("rl.algorithm")]), quiet=True)
    with pytest.raises(LmforgeError, match="rl does not use train.objective"):
        rl(load_config(None, base + ["train.objective=unlikelihood"]), quiet=True)
    with pytest.raises(LmforgeError, match="takes no 'schem'"):
        rl(load_config(None, base + ["rl.rewards=[{name: rhyme_en, args: {schem: AABB}}]"]), quiet=True)
    with pytest.raises(LmforgeError, match="finetune does not use rl"):
        from lmforge.train.run import finetune

        finetune(load_config(None, base[:-1] + ["data.train=x.jsonl"]))


def test_best_worst_pairs_by_hand():
    from lmforge.train.rollouts import best_worst_pairs

    ex = [{"input_ids": [1, 10 + i], "labels": [-100, 10 + i]} for i in range(6)]
    b = best_worst_pairs(ex, torch.tensor([0.0, 1.0, 0.5, 2.0, 2.0, 2.0]), k=3, pad_id=0)
    # group 0: best is sample 1, worst sample 0; group 1 scores alike: no pair
    assert b["input_ids"].tolist() == [[1, 11], [1, 10]] and b["num_pairs_here"] == 1
    assert b["pair_mask"].tolist() == [1.0]
    none = best_worst_pairs(ex[3:], torch.tensor([2.0, 2.0, 2.0]), k=3, pad_id=0)
    assert none["pair_mask"].tolist() == [0.0] and none["num_pairs_here"] == 1


def test_online_dpo_from_rollouts(tmp_path, tiny_model_dir):
    args = rl_overrides(tmp_path, "odpo", tiny_model_dir, "dpo", **{"train.max_steps": 2, "train.eval_every": 2})
    run = rl(load_config(None, args), quiet=True)
    rows = [r for r in metrics(run) if "rollout/reward" in r]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in metrics(run) if "loss" in r)


def test_replay_buffer_brings_back_the_best_sequences(tmp_path, tiny_model_dir):
    from lmforge.data.batches import Layout
    from lmforge.model import load_model_and_tokenizer
    from lmforge.rewards import Rewards, RewardTerm
    from lmforge.train.rollouts import Rollouts

    cfg = load_config(None, rl_overrides(tmp_path, "replay", tiny_model_dir, "tb", **{"rl.replay": 1}))
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    rewards = Rewards([RewardTerm.make("tests.user_plugins:length_reward")])  # longer text, higher reward
    src = Rollouts(cfg, model, tok, [{"prompt": "The"}], rewards, Layout(1, 1))
    first = src.train_step(0)[0]
    best_reward, best_ids = src._buffer["The"][0]
    assert best_reward == max(first["rewards"].tolist())
    second = src.train_step(1)[0]
    start = int(second["completion_start"][-1])
    row = second["input_ids"][-1, start : start + len(best_ids)].tolist()
    assert row == list(best_ids) and second["rewards"][-1].item() == best_reward  # the last sample is replayed
    with pytest.raises(LmforgeError, match="rl.replay"):
        load_config(None, ["rl.algorithm=rloo", "rl.replay=1"])


def test_validate_reads_rl_recipes_as_lmforge_rl(capsys):
    from tests.conftest import ROOT

    assert main(["validate", str(ROOT / "recipes" / "rl-poet-fr.yaml")]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["validate", str(ROOT / "recipes" / "rl-poet-fr.yaml"), "train.objective=causal_lm"]) == 0
    assert main(["validate", str(ROOT / "recipes" / "rl-poet-fr.yaml"), "train.objective=unlikelihood"]) == 2
