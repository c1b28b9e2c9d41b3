"""Models from scratch: size presets -> ``LlamaConfig`` (RoPE, RMSNorm, SwiGLU) -> ``LlamaForCausalLM``;
the attention kernel to train with; parameter and FLOP counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from lmforge.core.config import ModelConfig
from lmforge.core.errors import LmforgeError, did_you_mean


@dataclass(frozen=True)
class Preset:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    context: int
    num_kv_heads: Optional[int] = None


# SwiGLU width is ~8/3 of hidden, rounded to a multiple of 16.
PRESETS: dict[str, Preset] = {
    "tiny": Preset(64, 2, 4, 176, 128),  # ~0.1M: tests
    "1m": Preset(128, 4, 4, 352, 64),  # ~0.8M non-embedding, nanoGPT's CPU configuration's size
    "3m": Preset(192, 6, 6, 512, 128),  # the demo's poet
    "10m": Preset(384, 6, 6, 1024, 256),
    "40m": Preset(512, 12, 8, 1376, 256),  # the "tiny poetic LLM" seed's size
}


def check_preset(cfg: ModelConfig) -> None:
    if cfg.preset is not None and cfg.preset not in PRESETS:
        raise LmforgeError(f"model.preset: unknown preset {cfg.preset!r}" + did_you_mean(cfg.preset, PRESETS))


def llama_config(cfg: ModelConfig, tokenizer):
    from transformers import LlamaConfig

    check_preset(cfg)
    p = PRESETS.get(cfg.preset) if cfg.preset else None
    pick = lambda name: getattr(cfg, name) if getattr(cfg, name) is not None else (getattr(p, name) if p else None)
    dims = {
        k: pick(k) for k in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "context", "num_kv_heads")
    }
    missing = [k for k, v in dims.items() if v is None and k != "num_kv_heads"]
    if missing:
        raise LmforgeError(f"model: set model.preset or model.{missing[0]}")
    if dims["hidden_size"] % dims["num_heads"]:
        raise LmforgeError(
            f"model.hidden_size={dims['hidden_size']} is not divisible by model.num_heads={dims['num_heads']}"
        )
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=dims["hidden_size"],
        intermediate_size=dims["intermediate_size"],
        num_hidden_layers=dims["num_layers"],
        num_attention_heads=dims["num_heads"],
        num_key_value_heads=dims["num_kv_heads"] or dims["num_heads"],
        max_position_embeddings=dims["context"],
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_embeddings,
        attention_dropout=cfg.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )


def build_model(cfg: ModelConfig, tokenizer, seed: int = 0):
    """A freshly initialised ``LlamaForCausalLM`` (same seed, same weights)."""
    from transformers import LlamaForCausalLM

    config = llama_config(cfg, tokenizer)
    torch.manual_seed(seed)
    attn = "sdpa" if cfg.attn_implementation in (None, "auto") else cfg.attn_implementation
    return LlamaForCausalLM._from_config(config, attn_implementation=attn)


# Longest training sequence for which 'auto' picks eager attention on CPU: its (batch, heads, T, T)
# score matrices stay small, and below it PyTorch's CPU flash kernel loses to plain matmuls in bf16.
EAGER_MAX_CONTEXT = 512


def pick_attention(requested: Optional[str], mixed_precision: str, device_type: str, context: int) -> Optional[str]:
    """The attention kernel to train with; ``None`` keeps the model's own.

    Measured on a 2-core AVX-512 BF16 CPU (bare training steps; docs/results.md, "Pretraining speed"):
    under bf16 autocast eager attention trains the 1m preset 1.47x faster than sdpa, 3m 1.38x, 10m
    1.1x, 40m 1.04x; in fp32 the two are level. On GPUs sdpa (flash/memory-efficient kernels) wins.
    """
    if requested not in (None, "auto"):
        return requested
    if requested is None:
        return None
    if device_type == "cpu" and mixed_precision == "bf16" and context <= EAGER_MAX_CONTEXT:
        return "eager"
    return "sdpa"


def set_attention(model, impl: Optional[str]) -> None:
    """Switches a (possibly PEFT-wrapped) transformers model to attention kernel ``impl``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not impl or getattr(base.config, "_attn_implementation", None) == impl:
        return
    if hasattr(base, "set_attn_implementation"):
        base.set_attn_implementation(impl)
    else:  # older transformers: attention modules read the config at each forward
        base.config._attn_implementation = impl


def count_params(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flops_per_token(model, context: int) -> float:
    """Training FLOPs per token: 6 x (matmul weights, output head included) + attention scores.

    The attention term is 12 * layers * hidden * context (PaLM appendix B, as in nanoGPT's MFU).
    """
    cfg = model.config
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))  # lm_head included
    return 6.0 * matmul + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * context


def enable_gradient_checkpointing(model) -> None:
    """Non-reentrant activation checkpointing on a (possibly PEFT-wrapped) transformers model: no input
    grads needed, so frozen embeddings under LoRA/QLoRA are fine; the KV cache is off while training."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base.config.use_cache = False
