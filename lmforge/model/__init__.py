"""Models and tokenizers: presets built from scratch (``build``), the one loader (``load``), LoRA/QLoRA
adapters (``lora``), BPE tokenizers (``tokenizer``) and the well-formed token mask (``vocab``)."""

from lmforge.model.build import (
    PRESETS,
    Preset,
    build_model,
    check_preset,
    count_params,
    enable_gradient_checkpointing,
    flops_per_token,
    llama_config,
    pick_attention,
    set_attention,
)
from lmforge.model.load import (
    adapter_base,
    load_model_and_tokenizer,
    load_pretrained,
    load_tokenizer,
    resolve_device,
    resolve_model_path,
    save_model_folder,
)
from lmforge.model.lora import apply_lora, qlora_quantization_config

__all__ = [
    "PRESETS",
    "Preset",
    "adapter_base",
    "apply_lora",
    "build_model",
    "check_preset",
    "count_params",
    "enable_gradient_checkpointing",
    "flops_per_token",
    "llama_config",
    "load_model_and_tokenizer",
    "load_pretrained",
    "load_tokenizer",
    "pick_attention",
    "qlora_quantization_config",
    "resolve_device",
    "resolve_model_path",
    "save_model_folder",
    "set_attention",
]
