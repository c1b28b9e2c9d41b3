"""The keys other tools' users already type: each maps to the right lmforge setting, at the top of a config,
as key=value and as --key value, or is told lmforge has no such setting."""

from __future__ import annotations

import pytest

from lmforge.core.config import load_config
from lmforge.core.errors import LmforgeError

# (anchor key, value written, lmforge key, value lmforge reads)
TABLE = [
    ("base_model", "org/base", "model.base", "org/base"),
    ("model_name_or_path", "org/base", "model.base", "org/base"),
    ("sequence_len", 512, "model.context", 512),
    ("cutoff_len", 512, "model.context", 512),
    ("max_seq_length", 512, "model.context", 512),
    ("max_length", 512, "model.context", 512),
    ("adapter", "lora", "lora.method", "lora"),
    ("adapter", "qlora", "lora.method", "qlora"),
    ("finetuning_type", "lora", "lora.method", "lora"),
    ("finetuning_type", "full", "lora.method", "full"),
    ("lora_r", 8, "lora.r", 8),
    ("lora_rank", 8, "lora.r", 8),
    ("lora_alpha", 16, "lora.alpha", 16),
    ("lora_dropout", 0.05, "lora.dropout", 0.05),
    ("lora_target", "q_proj,v_proj", "lora.target_modules", ["q_proj", "v_proj"]),
    ("lora_target", "all", "lora.target_modules", None),
    ("lora_target_modules", ["q_proj", "k_proj"], "lora.target_modules", ["q_proj", "k_proj"]),
    ("lora_target_linear", True, "lora.target_modules", None),
    ("load_in_4bit", True, "lora.method", "qlora"),
    ("quantization_bit", 4, "lora.method", "qlora"),
    ("micro_batch_size", 4, "train.batch_size", 4),
    ("per_device_train_batch_size", 4, "train.batch_size", 4),
    ("gradient_accumulation_steps", 8, "train.grad_accum", 8),
    ("num_epochs", 3, "train.epochs", 3),
    ("num_train_epochs", 2.5, "train.epochs", 2.5),
    ("max_steps", 300, "train.max_steps", 300),
    ("learning_rate", 2e-4, "train.lr", 2e-4),
    ("lr_scheduler", "cosine", "train.lr_scheduler", "cosine"),
    ("lr_scheduler_type", "linear", "train.lr_scheduler", "linear"),
    ("lr_scheduler_type", "warmup_stable_decay", "train.lr_scheduler", "wsd"),
    ("optimizer", "adamw_torch", "train.optimizer", "adamw"),
    ("optim", "paged_adamw_8bit", "train.optimizer", "paged_adamw_8bit"),
    ("warmup_ratio", 0.03, "train.warmup_ratio", 0.03),
    ("weight_decay", 0.0, "train.weight_decay", 0.0),
    ("max_grad_norm", 0.3, "train.grad_clip", 0.3),
    ("train_on_inputs", True, "data.completion_only", False),
    ("train_on_inputs", False, "data.completion_only", True),
    ("train_on_prompt", True, "data.completion_only", False),
    ("gradient_checkpointing", True, "train.gradient_checkpointing", True),
    ("val_set_size", 0.05, "data.val_fraction", 0.05),
    ("save_total_limit", 3, "train.keep_last", 3),
    ("eval_steps", 50, "train.eval_every", 50),
    ("save_steps", 100, "train.save_every", 100),
    ("logging_steps", 5, "train.log_every", 5),
    ("report_to", "none", "train.report_to", []),
    ("output_dir", "outputs/my-lora", "out_dir", "outputs"),
    ("output_dir", "outputs/my-lora", "name", "my-lora"),
    ("seed", 7, "seed", 7),
    ("bf16", True, "train.precision", "bf16"),
    ("bf16", False, "train.precision", "fp32"),
]
NEEDS_FIELD = [
    ("sample_packing", True, "data.packing", True),
    ("packing", True, "data.packing", True),
    ("template", "llama3", "data.chat_template", "llama3"),
    ("chat_template", "chatml", "data.chat_template", "chatml"),
]
MISSING = ["neftune_noise_alpha"]


def _get(cfg, dotted):
    node = cfg
    for k in dotted.split("."):
        node = getattr(node, k)
    return node


def _has(dotted):
    try:
        _get(load_config(None, []), dotted)
        return True
    except AttributeError:
        return False


ROWS = TABLE + [
    pytest.param(*r, marks=pytest.mark.skipif(not _has(r[2]), reason=f"{r[2]} not in this build")) for r in NEEDS_FIELD
]


@pytest.mark.parametrize("key,value,target,want", ROWS)
def test_anchor_key_at_the_top_of_a_config(tmp_path, key, value, target, want):
    import yaml

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({key: value}))
    assert _get(load_config(p), target) == want


@pytest.mark.parametrize("key,value,target,want", ROWS)
def test_anchor_key_as_an_override(key, value, target, want):
    import json

    text = value if isinstance(value, str) else json.dumps(value)
    assert _get(load_config(None, [f"{key}={text}"]), target) == want


@pytest.mark.parametrize("key", MISSING)
def test_a_setting_lmforge_lacks_is_said_so(tmp_path, key):
    with pytest.raises(LmforgeError, match=rf"^lmforge has no {key} "):
        load_config(None, [f"{key}=5"])
    (tmp_path / "c.yaml").write_text(f"{key}: 5\n")
    with pytest.raises(LmforgeError, match=rf"^lmforge has no {key} "):
        load_config(tmp_path / "c.yaml")


def test_every_key_the_anchors_use_is_covered():
    """The list practitioners type (axolotl, LLaMA-Factory, TRL, TrainingArguments): none falls through."""
    from lmforge.core import habits

    keys = {r[0] for r in TABLE + NEEDS_FIELD} | set(MISSING)
    for key in keys - {"seed"}:
        assert habits.is_anchor(key), key


def test_a_note_says_how_each_key_was_read(capsys):
    load_config(None, ["cutoff_len=256", "train_on_inputs=true"])
    err = capsys.readouterr().err
    assert "read cutoff_len=256 as model.context=256" in err
    assert "read train_on_inputs=True as data.completion_only=False" in err


@pytest.mark.parametrize(
    "key,hint",
    [
        ("train.train_on_inputs", "'data.completion_only'"),
        ("train.sequence_len", "did you mean 'model.context'?"),
        ("train.learning_rate", "did you mean 'train.lr'?"),
    ],
)
def test_nested_anchor_keys_get_the_right_hint_not_a_lookalike(key, hint):
    with pytest.raises(LmforgeError) as e:
        load_config(None, [f"{key}=1"])
    assert hint in str(e.value) and "data.train'" not in str(e.value)


def test_bad_values_name_what_lmforge_has():
    with pytest.raises(LmforgeError, match="optim: lmforge has no 'adafactor'; it has adamw"):
        load_config(None, ["optim=adafactor"])
    with pytest.raises(LmforgeError, match="4-bit QLoRA only"):
        load_config(None, ["quantization_bit=8"])


def test_dashed_options_on_the_command_line(tmp_path, capsys):
    from lmforge.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {base: org/base}\n")
    assert (
        main(
            [
                "validate",
                str(cfg),
                "--learning_rate",
                "3e-4",
                "--cutoff_len=256",
                "train.batch_size=2",
                "--gradient_checkpointing",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "lr: 0.0003" in out and "context: 256" in out and "batch_size: 2" in out
    assert "gradient_checkpointing: true" in out
