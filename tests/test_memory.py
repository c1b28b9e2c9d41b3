"""Memory switches: gradient checkpointing changes memory, not results; 8-bit optimizers say what they need;
the estimate printed at start adds up and shrinks where it should."""

from __future__ import annotations

import json

import pytest
import torch

from lmforge.core.config import ModelConfig, load_config
from lmforge.core.errors import LmforgeError
from lmforge.model import build_model
from lmforge.train.derived import memory_estimate


def _lora_run(tmp_path, tiny_model_dir, name, *extra):
    from lmforge.train.run import finetune

    rows = [{"prompt": f"question {i}: ", "completion": f"answer {i % 3}"} for i in range(16)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(
        None,
        [
            f"out_dir={tmp_path}",
            f"name={name}",
            f"log_dir={tmp_path / 'logs'}",
            f"model.base={tiny_model_dir}",
            f"data.train={data}",
            "data.format=prompt_completion",
            "lora.method=lora",
            "lora.r=4",
            "train.precision=fp32",
            "train.max_steps=5",
            "train.batch_size=4",
            "train.lr=1e-2",
            "train.warmup_steps=0",
            "train.log_every=1",
            "train.eval_every=100",
            "train.save_every=100",
            *extra,
        ],
    )
    run = finetune(cfg, quiet=True)
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def test_gradient_checkpointing_gives_the_same_losses_under_lora(tmp_path, tiny_model_dir):
    plain = _lora_run(tmp_path, tiny_model_dir, "plain")
    ckpt = _lora_run(tmp_path, tiny_model_dir, "ckpt", "train.gradient_checkpointing=true")
    assert ckpt == pytest.approx(plain, rel=1e-5)
    assert plain[-1] < plain[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="8-bit optimizers run where there is CUDA")
@pytest.mark.parametrize("name", ["adamw_8bit", "paged_adamw_8bit"])
def test_8bit_optimizers_on_cpu_say_what_they_need(tmp_path, tiny_model_dir, name):
    with pytest.raises(LmforgeError, match=rf"train.optimizer={name} needs a CUDA GPU"):
        _lora_run(tmp_path, tiny_model_dir, name, f"train.optimizer={name}")


def test_memory_estimate_adds_up_and_checkpointing_shrinks_activations(tiny_tokenizer):
    model = build_model(ModelConfig(preset="tiny", context=128), tiny_tokenizer, seed=0)
    full = memory_estimate(model, 8, 128, "fp32", "adamw", checkpointing=False)
    ckpt = memory_estimate(model, 8, 128, "fp32", "adamw", checkpointing=True)
    n = sum(p.numel() for p in model.parameters())
    assert full["weights"] == 4 * n and full["gradients"] == 4 * n and full["optimizer"] == 8 * n
    assert full["total"] == sum(v for k, v in full.items() if k != "total")
    assert ckpt["activations"] < full["activations"] and ckpt["weights"] == full["weights"]
    assert memory_estimate(model, 8, 128, "fp32", "sgd", False)["optimizer"] == 0
    assert memory_estimate(model, 8, 128, "bf16", "adamw", False)["activations"] < full["activations"]


def test_the_estimate_is_printed_and_saved(tmp_path, capsys):
    from lmforge.cli import main
    from tests.conftest import VERSE

    text = tmp_path / "v.txt"
    text.write_text(VERSE * 20)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: mem\n")
    assert (
        main(
            [
                "pretrain",
                str(cfg),
                f"data.train={text}",
                f"out_dir={tmp_path}",
                f"log_dir={tmp_path / 'logs'}",
                "model.preset=tiny",
                "model.context=32",
                "tokenizer.vocab_size=128",
                "train.max_steps=2",
                "train.batch_size=2",
                "train.eval_every=100",
                "train.save_every=100",
                "sample.max_new_tokens=2",
            ]
        )
        == 0
    )
    assert "memory (estimate):" in capsys.readouterr().out
    mem = json.loads((tmp_path / "mem" / "derived.json").read_text())["memory"]
    parts = ("runtime", "weights", "gradients", "optimizer", "activations")
    assert mem["total"] == sum(mem[k] for k in parts) > 0
    assert mem["runtime"] > 50 * 2**20  # the process already holds torch and the data


def _saved_bytes(model, tokens, precision: str) -> int:
    """Bytes autograd saves for backward in one forward (parameters excluded), from torch's own hooks."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with (
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"),
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
    ):
        model(input_ids=tokens, labels=tokens)
    return sum(seen.values())


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_estimate_matches_what_autograd_saves(tiny_tokenizer, precision, checkpointing):
    from lmforge.model.build import enable_gradient_checkpointing, set_attention
    from lmforge.train.derived import TRANSIENT

    model = build_model(ModelConfig(preset="1m", context=256), tiny_tokenizer, seed=0)
    set_attention(model, "sdpa")
    if checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    tokens = torch.randint(0, model.config.vocab_size, (2, 256))
    saved = _saved_bytes(model, tokens, precision)
    if checkpointing:  # backward recomputes one layer in full at a time: what one plain layer saves
        plain = build_model(ModelConfig(preset="1m", context=256), tiny_tokenizer, seed=0)
        set_attention(plain, "sdpa")
        plain.train()
        saved += _saved_bytes(plain, tokens, precision) // plain.config.num_hidden_layers
    est = memory_estimate(model, 2, 256, precision, "adamw", checkpointing)["activations"] / TRANSIENT
    assert 0.75 < est / saved < 1.33, (est, saved)
