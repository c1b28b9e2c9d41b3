"""``train.batch_size: auto`` decided before a run, as the run will decide it: for ``lmforge data preview``.

The same model a run trains (the base with its adapters and PAD rule, or the preset built on the given
tokenizer), the same precision, attention kernel and gradient checkpointing, then ``auto.resolve_batch_size``:
the micro-batch it picks is the one training picks on this machine with the memory free now.
"""

from __future__ import annotations

from lmforge.core.config import RunConfig
from lmforge.core.errors import LmforgeError
from lmforge.model import (
    build_model,
    check_preset,
    enable_gradient_checkpointing,
    load_tokenizer,
    pick_attention,
    set_attention,
)
from lmforge.train import finetune as ft
from lmforge.train.auto import resolve_batch_size
from lmforge.train.run import make_accelerator, pick_precision


def choose_batch_size(cfg: RunConfig) -> dict:
    """Sets ``cfg.train.batch_size`` and ``grad_accum`` to what a run would choose; returns the choice
    (``auto.fit_line`` says it as the run does)."""
    if cfg.train.batch_size != "auto":
        raise ValueError("train.batch_size is not auto")
    precision = pick_precision(cfg.train.precision)
    accelerator = make_accelerator(cfg, precision)
    if cfg.model.base:
        _, model = ft.load_base(cfg)
        context = ft.base_context(cfg, model)
    elif cfg.tokenizer.path:
        check_preset(cfg.model)
        model = build_model(cfg.model, load_tokenizer(cfg.tokenizer.path, cfg.model.trust_remote_code), seed=cfg.seed)
        context = model.config.max_position_embeddings
    else:  # pretraining trains its tokenizer first: the vocabulary, and so the embeddings, are not known yet
        raise LmforgeError("train.batch_size=auto is chosen with the model: set model.base (or tokenizer.path)")
    set_attention(model, pick_attention(cfg.model.attn_implementation, precision, accelerator.device.type, context))
    if cfg.train.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return resolve_batch_size(cfg, model, context, accelerator)
