"""The key names other fine-tuning tools use (axolotl, LLaMA-Factory, TRL, Hugging Face ``TrainingArguments``),
read as lmforge's own: ``cutoff_len: 512`` at the top of a config, ``cutoff_len=512`` or ``--cutoff_len 512``
on the command line each become ``model.context: 512``, with a one-line note. A setting lmforge does not
have is said so ("lmforge has no neftune_noise_alpha") instead of a guess at an unrelated key.

Each entry maps a value to ``{dotted lmforge key: value}``; a ``str`` entry is a plain rename.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath
from typing import Any, Union

from lmforge.core.errors import LmforgeError

Mapping = Union[str, Callable[[Any], dict]]

OPTIMIZERS = {
    "adamw": "adamw",
    "adamw_torch": "adamw",
    "adamw_torch_fused": "adamw",
    "adamw_hf": "adamw",
    "adamw_8bit": "adamw_8bit",
    "adamw_bnb_8bit": "adamw_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "sgd": "sgd",
}
SCHEDULERS = {
    "cosine": "cosine",
    "cosine_with_min_lr": "cosine",
    "linear": "linear",
    "constant": "constant",
    "constant_with_warmup": "constant",
    "wsd": "wsd",
    "warmup_stable_decay": "wsd",
}
METHODS = {"lora": "lora", "qlora": "qlora", "full": "full"}


def _choice(key: str, table: dict, target: str) -> Callable[[Any], dict]:
    def read(value):
        name = str(value).strip().lower()
        if name not in table:
            raise LmforgeError(
                f"{key}: lmforge has no {value!r}; it has {', '.join(sorted(set(table.values())))} ({target})"
            )
        return {target: table[name]}

    read.target = target
    return read


def _targets(value) -> dict:
    """``all``, a comma-separated string or a list of module names; ``all``/``all-linear`` is lmforge's default."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if value is not None and not isinstance(value, (list, tuple)):
        raise LmforgeError(f"lora_target={value!r}: give module names, as a list or a comma-separated string")
    names = [str(v) for v in value or []]
    return {"lora.target_modules": None if names in ([], ["all"], ["all-linear"]) else names}


def _output_dir(value) -> dict:
    """Other tools name the run's own folder; lmforge writes runs/<name>: the parent is out_dir, the last part name."""
    p = PurePath(str(value))
    if value is None or not p.name:
        raise LmforgeError(f"output_dir={value!r}: name the run's own folder, e.g. runs/my-run")
    return {"out_dir": str(p.parent), "name": p.name}


def _val_set_size(value) -> dict:
    if isinstance(value, (int, float)) and 0 <= value < 1:
        return {"data.val_fraction": value}
    raise LmforgeError(
        f"val_set_size={value!r}: lmforge holds out a fraction of the rows, not a count; "
        "set data.val_fraction (e.g. 0.05)"
    )


def _quantization_bit(value) -> dict:
    if not isinstance(value, bool) and str(value).strip() in ("4", "4.0"):
        return {"lora.method": "qlora"}
    raise LmforgeError(f"quantization_bit={value!r}: lmforge has 4-bit QLoRA only (lora.method=qlora)")


ANCHOR_KEYS: dict[str, Mapping] = {
    "base_model": "model.base",
    "model_name_or_path": "model.base",
    "sequence_len": "model.context",
    "cutoff_len": "model.context",
    "max_seq_length": "model.context",
    "max_length": "model.context",
    "adapter": _choice("adapter", METHODS, "lora.method"),
    "finetuning_type": _choice("finetuning_type", METHODS, "lora.method"),
    "lora_r": "lora.r",
    "lora_rank": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "lora_target": _targets,
    "lora_target_modules": _targets,
    "lora_target_linear": lambda v: {"lora.target_modules": None} if v else {},
    "load_in_4bit": lambda v: {"lora.method": "qlora"} if v else {},
    "quantization_bit": _quantization_bit,
    "micro_batch_size": "train.batch_size",
    "per_device_train_batch_size": "train.batch_size",
    "gradient_accumulation_steps": "train.grad_accum",
    "num_epochs": "train.epochs",
    "num_train_epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "learning_rate": "train.lr",
    "lr_scheduler": _choice("lr_scheduler", SCHEDULERS, "train.lr_scheduler"),
    "lr_scheduler_type": _choice("lr_scheduler_type", SCHEDULERS, "train.lr_scheduler"),
    "optimizer": _choice("optimizer", OPTIMIZERS, "train.optimizer"),
    "optim": _choice("optim", OPTIMIZERS, "train.optimizer"),
    "warmup_ratio": "train.warmup_ratio",
    "warmup_steps": "train.warmup_steps",
    "weight_decay": "train.weight_decay",
    "max_grad_norm": "train.grad_clip",
    "train_on_inputs": lambda v: {"data.completion_only": not v},
    "train_on_prompt": lambda v: {"data.completion_only": not v},
    "sample_packing": "data.packing",
    "packing": "data.packing",
    "gradient_checkpointing": "train.gradient_checkpointing",
    "val_set_size": _val_set_size,
    "save_total_limit": "train.keep_last",
    "eval_steps": "train.eval_every",
    "save_steps": "train.save_every",
    "logging_steps": "train.log_every",
    "report_to": "train.report_to",
    "output_dir": _output_dir,
    "bf16": lambda v: {"train.precision": "bf16" if v else "fp32"},
    "template": "data.chat_template",
    "chat_template": "data.chat_template",
}

# Settings of those tools lmforge does not have: said so, with what comes nearest where something does.
MISSING: dict[str, str] = {
    "neftune_noise_alpha": "no embedding-noise (NEFTune) fine-tuning",
    "deepspeed": "no DeepSpeed config key; launch with accelerate's own configuration",
    "flash_attention": "no flash_attention switch; set model.attn_implementation",
    "fp16": "no fp16 switch; set train.precision: fp16",
    "tf32": "no tf32 switch",
    "lora_fan_in_fan_out": "no lora_fan_in_fan_out",
    "group_by_length": "no top-level group_by_length; set data.group_by_length",
}


def translate(key: str, value: Any) -> dict:
    """``{dotted lmforge key: value}`` for an anchor key, or a one-line error for a setting lmforge lacks."""
    if key in MISSING:
        raise LmforgeError(f"lmforge has no {key} ({MISSING[key]})")
    mapping = ANCHOR_KEYS[key]
    return {mapping: value} if isinstance(mapping, str) else mapping(value)


def is_anchor(key: str) -> bool:
    return key in ANCHOR_KEYS or key in MISSING


def hint(key: str) -> str:
    """For an unknown nested key whose last part is an anchor name: where lmforge keeps that setting."""
    if key in MISSING:
        return f"lmforge has no {key} ({MISSING[key]})"
    mapping = ANCHOR_KEYS[key]
    if isinstance(mapping, str):
        return f"did you mean {mapping!r}?"
    try:
        targets = list(mapping(True)) if not hasattr(mapping, "target") else [mapping.target]
    except (LmforgeError, TypeError, ValueError):
        targets = []
    where = " and ".join(repr(t) for t in targets) or "another key"
    return f"lmforge keeps it as {where}; written at the top level ({key}: ...) it is read as that"
