"""LoRA and QLoRA adapters through PEFT (QLoRA: bitsandbytes 4-bit NF4, CUDA only)."""

from __future__ import annotations

import torch

from lmforge.core.config import LoraConfig
from lmforge.core.errors import LmforgeError, first_line


def apply_lora(model, cfg: LoraConfig):
    """Wraps ``model`` with PEFT LoRA adapters; only adapters (and modules_to_save) stay trainable."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        use_rslora=cfg.rslora,
        target_modules=cfg.target_modules or "all-linear",
        modules_to_save=cfg.modules_to_save or None,
        # a tied embedding trained in full must stay tied to the head (else merge and export diverge)
        ensure_weight_tying=bool(getattr(model.config, "tie_word_embeddings", False) and cfg.modules_to_save),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, peft_cfg)
    except ValueError as e:
        raise LmforgeError(f"lora: {first_line(e)}") from None


def qlora_quantization_config():
    """bitsandbytes 4-bit NF4 with bf16 compute; CUDA only."""
    if not torch.cuda.is_available():
        raise LmforgeError(
            "lora.method=qlora needs a CUDA GPU (bitsandbytes 4-bit); on this machine use lora.method=lora"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise LmforgeError("lora.method=qlora needs bitsandbytes: pip install 'lmforge[qlora]'") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
