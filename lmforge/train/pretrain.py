"""Pretraining from scratch: corpus -> tokenizer -> Llama preset -> packed blocks, planned for ``run.py``."""

from __future__ import annotations

import torch

from lmforge.core.config import RunConfig
from lmforge.core.errors import LmforgeError
from lmforge.data.batches import Layout, PackedStream
from lmforge.data.text import load_text_splits, tokenize_stream
from lmforge.model import build_model, check_preset, load_tokenizer, pick_attention, set_attention
from lmforge.model.tokenizer import chars_per_token, train_tokenizer
from lmforge.train.plan import Plan
from lmforge.train.samples import Sampler


def prepare_tokenizer(cfg: RunConfig, train_docs: list[str], resume: bool):
    """The run's tokenizer: given, reused on resume, or trained on the training documents."""
    tok_dir = cfg.run_dir / "tokenizer"
    if cfg.tokenizer.path:
        return load_tokenizer(cfg.tokenizer.path, cfg.model.trust_remote_code)
    if resume and (tok_dir / "tokenizer.json").is_file():
        return load_tokenizer(tok_dir)
    tok = train_tokenizer(
        train_docs,
        cfg.tokenizer.vocab_size,
        tok_dir,
        cfg.tokenizer.min_frequency,
        split_digits=cfg.tokenizer.split_digits,
    )
    sample = "".join(train_docs)[:200_000]
    print(f"tokenizer: {len(tok)} tokens, {chars_per_token(tok, [sample]):.2f} characters per token -> {tok_dir}")
    return tok


def packed_data(cfg: RunConfig, tokenizer, train_docs, val_docs, context: int, accelerator) -> PackedStream:
    train_s = tokenize_stream(train_docs, tokenizer)
    val_s = tokenize_stream(val_docs, tokenizer) if val_docs else None
    layout = Layout(cfg.train.batch_size, cfg.train.grad_accum, accelerator.num_processes, accelerator.process_index)
    try:
        data = PackedStream(
            train_s.tokens, val_s.tokens if val_s else torch.zeros(0, dtype=torch.long), context, layout, cfg.seed
        )
    except ValueError as e:
        raise LmforgeError(f"data.train: {e}; use more text or a smaller model.context") from None
    data.chars_per_token = (val_s or train_s).chars_per_token
    return data


def plan(cfg: RunConfig, accelerator, precision: str, resume: bool) -> Plan:
    """The tokenizer (trained on the main process first), a fresh preset model, one packed-text stage."""
    check_preset(cfg.model)
    train_docs, val_docs = load_text_splits(cfg.data)
    if accelerator.is_main_process:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = prepare_tokenizer(cfg, train_docs, resume) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    if tokenizer is None:
        tokenizer = prepare_tokenizer(cfg, train_docs, resume=True)
    model = build_model(cfg.model, tokenizer, seed=cfg.seed)
    context = model.config.max_position_embeddings
    set_attention(model, pick_attention(cfg.model.attn_implementation, precision, accelerator.device.type, context))
    tokenizer.model_max_length = context
    sampler = Sampler(cfg, tokenizer, cfg.run_dir)
    return Plan(
        model,
        tokenizer,
        context,
        stages=[cfg],
        data=lambda c: packed_data(c, tokenizer, train_docs, val_docs, context, accelerator),
        evaluators=lambda c, data: (sampler,),
        final=[lambda m, step: sampler(m, step, force=True)],
    )
