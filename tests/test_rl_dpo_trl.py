"""Parity: lmforge's DPO objective gives TRL's DPOTrainer loss and implicit rewards on the same fixed batch."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("trl")


def test_dpo_matches_trl_dpo_trainer(tmp_path, tiny_model_dir, one_thread):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from lmforge.losses.common import IGNORE
    from lmforge.losses.objectives import make_reference
    from lmforge.losses.rl_objectives import dpo

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = copy.deepcopy(ref)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a policy that differs from its reference, so the rewards are not all zero
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    rows = [
        {"prompt": "The sea", "chosen": " is calm tonight", "rejected": " vent"},
        {"prompt": "Le vent", "chosen": " se lève", "rejected": " the tide is full"},
        {"prompt": "Shall I", "chosen": " compare thee", "rejected": " answer"},
    ]
    beta = 0.3
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"), beta=beta, per_device_train_batch_size=3, report_to=[], use_cpu=True
    )
    trainer = DPOTrainer(
        model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    )
    batch = next(iter(trainer.get_train_dataloader()))  # TRL's rows: [chosen..., rejected...]
    trainer.model.train()
    trl_loss = trainer.compute_loss(trainer.model, batch).item()
    logged = trainer._metrics["train"]

    ours = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "labels": batch["input_ids"].masked_fill(batch["completion_mask"] == 0, IGNORE),
        "num_pairs": 3,
        "num_pairs_here": 3,
    }
    loss, metrics = dpo(model, ours, make_reference(ref, peft=False), beta=beta)
    assert abs(trl_loss - 0.6931) > 1e-3  # the batch does discriminate
    assert loss.item() == pytest.approx(trl_loss, abs=1e-4)
    assert metrics["chosen_reward_sum"].item() / 3 == pytest.approx(logged["rewards/chosen"][-1], abs=1e-4)
    assert metrics["rejected_reward_sum"].item() / 3 == pytest.approx(logged["rewards/rejected"][-1], abs=1e-4)
    assert metrics["accuracy_sum"].item() / 3 == pytest.approx(logged["rewards/accuracies"][-1], abs=1e-6)
