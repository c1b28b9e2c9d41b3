"""Pretraining from scratch: corpus -> tokenizer -> Llama preset -> the one loop -> ``runs/<name>/model``."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import RunConfig, save_config
from ..data.batches import Layout, PackedStream
from ..data.text import load_text_splits, tokenize_stream
from ..errors import LmforgeError
from .derived import describe, print_derived
from .loop import pick_precision, train
from .samples import Sampler


def make_accelerator(cfg: RunConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one progress bar per run: ours
    set_seed(cfg.seed)
    AcceleratorState._reset_state(True)  # a second run in the same process may use another precision
    return Accelerator(mixed_precision=pick_precision(cfg.train.precision), cpu=not torch.cuda.is_available())


def prepare_tokenizer(cfg: RunConfig, train_docs: list[str], resume: bool):
    """The run's tokenizer: given, reused on resume, or trained on the training documents."""
    from ..tokenizer import chars_per_token, load_tokenizer, train_tokenizer

    tok_dir = cfg.run_dir / "tokenizer"
    if cfg.tokenizer.path:
        return load_tokenizer(cfg.tokenizer.path, cfg.model.trust_remote_code)
    if resume and (tok_dir / "tokenizer.json").is_file():
        return load_tokenizer(tok_dir)
    tok = train_tokenizer(train_docs, cfg.tokenizer.vocab_size, tok_dir, cfg.tokenizer.min_frequency,
                          split_digits=cfg.tokenizer.split_digits)
    sample = "".join(train_docs)[:200_000]
    print(f"tokenizer: {len(tok)} tokens, {chars_per_token(tok, [sample]):.2f} characters per token -> {tok_dir}")
    return tok


def packed_data(cfg: RunConfig, tokenizer, train_docs, val_docs, context: int, accelerator) -> PackedStream:
    train_s = tokenize_stream(train_docs, tokenizer)
    val_s = tokenize_stream(val_docs, tokenizer) if val_docs else None
    layout = Layout(cfg.train.batch_size, cfg.train.grad_accum, accelerator.num_processes, accelerator.process_index)
    try:
        data = PackedStream(train_s.tokens, val_s.tokens if val_s else torch.zeros(0, dtype=torch.long),
                            context, layout, cfg.seed)
    except ValueError as e:
        raise LmforgeError(f"data.train: {e}; use more text or a smaller model.context") from None
    data.chars_per_token = (val_s or train_s).chars_per_token
    return data


def pretrain(cfg: RunConfig, resume: bool = False, quiet: bool = False) -> Path:
    """Trains a tokenizer (unless given) and a model from scratch; returns the run folder."""
    from ..model import build_model, check_preset, pick_attention, set_attention

    if cfg.model.base:
        raise LmforgeError("model.base is set: starting from a pretrained model is `lmforge finetune`")
    check_preset(cfg.model)
    accelerator = make_accelerator(cfg)
    train_docs, val_docs = load_text_splits(cfg.data)
    run_dir = cfg.run_dir
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    tokenizer = prepare_tokenizer(cfg, train_docs, resume) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    if tokenizer is None:
        tokenizer = prepare_tokenizer(cfg, train_docs, resume=True)
    model = build_model(cfg.model, tokenizer, seed=cfg.seed)
    context = model.config.max_position_embeddings
    set_attention(model, pick_attention(cfg.model.attn_implementation, pick_precision(cfg.train.precision),
                                        accelerator.device.type, context))
    tokenizer.model_max_length = context
    data = packed_data(cfg, tokenizer, train_docs, val_docs, context, accelerator)
    tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum * accelerator.num_processes * context
    if accelerator.is_main_process and not quiet:
        d = describe(model, context, tokens_per_step, cfg.train.max_steps, pick_precision(cfg.train.precision),
                     accelerator.device, cfg.train.max_time_s)
        print_derived(d, run_dir / "derived.json")
    sampler = Sampler(cfg, tokenizer, run_dir)
    result = train(cfg, model, tokenizer, data, accelerator=accelerator, evaluators=(sampler,), resume=resume)
    finish(accelerator, model, tokenizer, run_dir, sampler, result.step)
    return run_dir


def finish(accelerator, model, tokenizer, run_dir: Path, sampler, step: int) -> None:
    """The final model folder and a last set of samples."""
    from .checkpoint import save_model_folder

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        save_model_folder(final, tokenizer, run_dir / "model")
        sampler(final, step, force=True)
