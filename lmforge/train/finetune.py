"""Fine-tuning a pretrained model (full, LoRA, QLoRA) through the same loop, stage after stage.

Correct by default: PAD distinct from EOS (the run-on trap), EOS appended to every completion and
never masked, loss on completions only, the best checkpoint chosen by a metric, not by hand.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import DataConfig, RunConfig, save_config
from ..data.batches import ExampleBatches, Layout
from ..errors import LmforgeError
from ..model import pick_attention, set_attention
from ..registry import OBJECTIVES
from .derived import describe, print_derived
from .loop import pick_precision, train
from .pretrain import finish, make_accelerator, packed_data
from .samples import Sampler


def load_base(cfg: RunConfig):
    """Tokenizer and model from ``model.base``, with the PAD rule applied and adapters attached."""
    from ..model import apply_lora, load_pretrained, qlora_quantization_config
    from ..tokenizer import ensure_pad, load_tokenizer

    if not cfg.model.base:
        raise LmforgeError("model.base: set the model to fine-tune (hub id, folder or lmforge run)")
    tokenizer = load_tokenizer(cfg.model.base, cfg.model.trust_remote_code)
    grew = ensure_pad(tokenizer)
    quant = qlora_quantization_config() if cfg.lora.method == "qlora" else None
    model = load_pretrained(cfg.model.base, cfg.model.trust_remote_code, quantization_config=quant,
                            dtype=torch.bfloat16 if quant is not None else None)
    if hasattr(model, "peft_config"):
        raise LmforgeError(f"model.base={cfg.model.base} is a LoRA adapter; merge it first (lmforge export merge)")
    if grew or model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if cfg.lora.method in ("lora", "qlora"):
        model = apply_lora(model, cfg.lora)
    return tokenizer, model


def make_reference(cfg: RunConfig, model):
    """The frozen reference an objective compares against: the adapter-disabled model under LoRA."""
    if not getattr(OBJECTIVES.get(cfg.train.objective), "needs_reference", False):
        return None
    from .least_likely import make_reference as _make

    return _make(model, peft=cfg.lora.method != "full")


def stage_data(cfg: RunConfig, data_cfg: DataConfig, tokenizer, context: int, accelerator):
    """Raw text is packed into blocks (continued pretraining); rows become padded examples."""
    if data_cfg.format == "text" and all(s.format in (None, "text") for s in data_cfg.train):
        from ..data.text import load_text_splits

        tr, va = load_text_splits(data_cfg)
        return packed_data(cfg, tokenizer, tr, va, context, accelerator)
    from ..data.examples import load_examples

    train_ex, val_ex = load_examples(data_cfg, tokenizer, context, cfg.seed)
    layout = Layout(cfg.train.batch_size, cfg.train.grad_accum, accelerator.num_processes, accelerator.process_index)
    return ExampleBatches(train_ex, val_ex, layout, cfg.seed, tokenizer.pad_token_id, data_cfg.group_by_length)


def stage_evaluators(cfg: RunConfig, sampler, reference, data, tokenizer, model) -> tuple:
    """Samples always; a task's metrics on the validation rows (best checkpoint by json_em, rouge...);
    with a reference model, the unlikeliness measurements (TensorBoard eval/unlikely/*)."""
    out = [sampler]
    if cfg.train.eval_task:
        out.append(task_evaluator(cfg, data, tokenizer))
    if reference is not None:
        from ..decoding import well_formed_mask
        from ..evaluate.unlikeliness import unlikeliness_evaluator

        allowed = well_formed_mask(tokenizer, model.get_output_embeddings().weight.shape[0])
        out.append(unlikeliness_evaluator(reference, data, allowed))
    return tuple(out)


def task_evaluator(cfg: RunConfig, data, tokenizer):
    """Greedy answers to the validation rows, scored by the task: the same numbers ``lmforge eval`` reports."""
    from ..evaluate import answer_budget, evaluate_generation
    from ..evaluate.tasks import load_task

    # the task's prompts and scoring; its rows are ours (the validation rows), read from the same file
    task = load_task(cfg.train.eval_task, data=cfg.data.train[0].path if cfg.data.train else None)
    rows = [e["row"] for e in data.val if "row" in e] if isinstance(data, ExampleBatches) else []
    if not rows:
        raise LmforgeError(f"train.eval_task={cfg.train.eval_task} needs validation rows (data.val or data.val_fraction)")

    # the budget lmforge eval gives: a fixed one shorter than the longest answer scores right answers as cut
    budget = cfg.train.eval_max_new_tokens or answer_budget(tokenizer, task, rows)

    def evaluate(model, step):
        return evaluate_generation(model, tokenizer, task, rows, max_new_tokens=budget,
                                   constrained=cfg.train.eval_constrained, batch_size=cfg.train.batch_size)
    return evaluate


def run_checks(cfg: RunConfig, model, tokenizer, context: int) -> None:
    """The doctor's checks on the base model and tokenizer; errors refuse to train, with the same messages."""
    from ..doctor import check, raise_on_errors

    raise_on_errors(check(model=model, tokenizer=tokenizer, data_format=cfg.data.format, max_positions=context,
                          purpose="train"))


def finetune(cfg: RunConfig, resume: bool = False, quiet: bool = False) -> Path:
    """Fine-tunes ``model.base`` on ``data`` then on each of ``stages``; returns the run folder."""
    accelerator = make_accelerator(cfg)
    tokenizer, model = load_base(cfg)
    run_dir = cfg.run_dir
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    context = cfg.model.context or min(getattr(model.config, "max_position_embeddings", 1024), 1024)
    set_attention(model, pick_attention(cfg.model.attn_implementation, pick_precision(cfg.train.precision),
                                        accelerator.device.type, context))
    run_checks(cfg, model, tokenizer, context)
    reference = make_reference(cfg, model)
    sampler = Sampler(cfg, tokenizer, run_dir)
    stages = [(cfg.data, cfg.train.max_steps, cfg.train.lr)] + [
        (s.data, s.max_steps or cfg.train.max_steps, s.lr or cfg.train.lr) for s in cfg.stages]
    done = 0
    if resume:
        from .checkpoint import latest_checkpoint

        last = latest_checkpoint(run_dir)
        done = int(last.name.split("-")[1]) if last else 0
    offset, step = 0, 0
    for i, (data_cfg, steps, lr) in enumerate(stages):
        stage_cfg = cfg.model_copy(deep=True)
        stage_cfg.train.max_steps, stage_cfg.train.lr = steps, lr
        if offset + steps <= done:  # finished before the interruption
            offset += steps
            continue
        data = stage_data(stage_cfg, data_cfg, tokenizer, context, accelerator)
        if accelerator.is_main_process and not quiet:
            tokens = cfg.train.batch_size * cfg.train.grad_accum * accelerator.num_processes * context
            print(f"stage {i + 1}/{len(stages)}: {steps} steps on {', '.join(s.path for s in data_cfg.train)}")
            print_derived(describe(model, context, tokens, steps, pick_precision(cfg.train.precision),
                                   accelerator.device, cfg.train.max_time_s), run_dir / f"derived-stage{i + 1}.json")
        result = train(stage_cfg, model, tokenizer, data, accelerator=accelerator, reference=reference,
                       evaluators=stage_evaluators(stage_cfg, sampler, reference, data, tokenizer, model),
                       resume=resume and done > offset, step_offset=offset)
        step = offset + result.step
        if result.interrupted:
            break
        offset += steps
    finish(accelerator, model, tokenizer, run_dir, sampler, step)
    return run_dir
