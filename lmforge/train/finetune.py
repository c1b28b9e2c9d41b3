"""Fine-tuning a pretrained model (full, LoRA, QLoRA), planned for ``run.py``: stage after stage, one loop.

Correct by default: PAD distinct from EOS (the run-on trap), EOS appended to every completion and
never masked, loss on completions only, the best checkpoint chosen by a metric, not by hand.
"""

from __future__ import annotations

import torch

from lmforge.core.config import DataConfig, RunConfig
from lmforge.core.errors import LmforgeError
from lmforge.core.registry import OBJECTIVES
from lmforge.data.batches import ExampleBatches, Layout
from lmforge.data.chat import prepare_tokenizer
from lmforge.data.examples import load_examples
from lmforge.data.packing import PackedExamples
from lmforge.data.text import load_text_splits
from lmforge.doctor import check, raise_on_errors
from lmforge.losses.objectives import make_reference as reference_model
from lmforge.model import apply_lora, load_model_and_tokenizer, pick_attention, qlora_quantization_config, set_attention
from lmforge.model.tokenizer import ensure_pad
from lmforge.model.vocab import well_formed_mask
from lmforge.scoring import answer_budget, evaluate_generation, load_task
from lmforge.scoring.unlikeliness import unlikeliness_evaluator
from lmforge.train.plan import Plan
from lmforge.train.pretrain import packed_data
from lmforge.train.samples import Sampler


def load_base(cfg: RunConfig):
    """Tokenizer and model from ``model.base``, with the PAD rule applied and adapters attached."""
    if not cfg.model.base:
        raise LmforgeError("model.base: set the model to fine-tune (hub id, folder or lmforge run)")
    quant = qlora_quantization_config() if cfg.lora.method == "qlora" else None
    model, tokenizer = load_model_and_tokenizer(
        cfg.model.base,
        trust_remote_code=cfg.model.trust_remote_code,
        quantization_config=quant,
        dtype=torch.bfloat16 if quant is not None else None,
    )
    grew = ensure_pad(tokenizer)
    # named chat templates bring their marker tokens, and the tokenizer keeps the template it is trained with
    grew = prepare_tokenizer(tokenizer, cfg.data, *(st.data for st in cfg.stages)) or grew
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


def base_context(cfg: RunConfig, model) -> int:
    """Tokens per training sequence: ``model.context``, else the base's positions up to 1024."""
    return cfg.model.context or min(getattr(model.config, "max_position_embeddings", 1024), 1024)


def make_reference(cfg: RunConfig, model):
    """The frozen reference an objective compares against: the adapter-disabled model under LoRA."""
    if not OBJECTIVES.get(cfg.train.objective).needs_reference:
        return None
    return reference_model(model, peft=cfg.lora.method != "full")


def stage_data(cfg: RunConfig, data_cfg: DataConfig, tokenizer, context: int, accelerator):
    """Raw text is packed into blocks (continued pretraining); rows become padded examples, or packed ones
    (``data.packing``)."""
    if data_cfg.format == "text" and all(s.format in (None, "text") for s in data_cfg.train):
        tr, va = load_text_splits(data_cfg)
        return packed_data(cfg, tokenizer, tr, va, context, accelerator)
    train_ex, val_ex = load_examples(data_cfg, tokenizer, context, cfg.seed)
    layout = Layout(cfg.train.batch_size, cfg.train.grad_accum, accelerator.num_processes, accelerator.process_index)
    if data_cfg.packing:
        if cfg.train.objective == "unlikelihood":  # its candidates are the row's earlier tokens: other examples'
            raise LmforgeError(
                "data.packing=true mixes examples in the unlikelihood objective's context; set data.packing=false"
            )
        return PackedExamples(train_ex, val_ex, layout, cfg.seed, tokenizer.pad_token_id, context)
    return ExampleBatches(train_ex, val_ex, layout, cfg.seed, tokenizer.pad_token_id, data_cfg.group_by_length)


def stage_evaluators(cfg: RunConfig, sampler, reference, data, tokenizer, model) -> tuple:
    """Samples always; a task's metrics on the validation rows (best checkpoint by json_em, rouge...);
    with a reference model, the unlikeliness measurements (TensorBoard eval/unlikely/*)."""
    out = [sampler]
    if cfg.train.eval_task:
        out.append(task_evaluator(cfg, data, tokenizer))
    if reference is not None:
        allowed = well_formed_mask(tokenizer, model.get_output_embeddings().weight.shape[0])
        out.append(unlikeliness_evaluator(reference, data, allowed))
    return tuple(out)


def task_evaluator(cfg: RunConfig, data, tokenizer):
    """Greedy answers to the validation rows, scored by the task: the same numbers ``lmforge eval`` reports."""
    # the task's prompts and scoring; its rows are ours (the validation rows), read from the same file
    task = load_task(cfg.train.eval_task, data=cfg.data.train[0].path if cfg.data.train else None)
    rows = [e["row"] for e in data.val if "row" in e] if isinstance(data, ExampleBatches) else []
    if not rows:
        raise LmforgeError(
            f"train.eval_task={cfg.train.eval_task} needs validation rows (data.val or data.val_fraction)"
        )

    # the budget lmforge eval gives: a fixed one shorter than the longest answer scores right answers as cut
    budget = cfg.train.eval_max_new_tokens or answer_budget(tokenizer, task, rows)

    def evaluate(model, step):
        return evaluate_generation(
            model,
            tokenizer,
            task,
            rows,
            max_new_tokens=budget,
            constrained=cfg.train.eval_constrained,
            batch_size=cfg.train.batch_size,
        )

    return evaluate


def run_checks(cfg: RunConfig, model, tokenizer, context: int) -> None:
    """The doctor's checks on the base model and tokenizer; errors refuse to train, with the same messages."""
    raise_on_errors(
        check(model=model, tokenizer=tokenizer, data_format=cfg.data.format, max_positions=context, purpose="train")
    )


def plan(cfg: RunConfig, accelerator, precision: str, resume: bool) -> Plan:
    """The base (checked by the doctor, adapters attached), its reference if the objective needs one, and
    one stage per data section: ``data`` first, then each of ``stages``."""
    tokenizer, model = load_base(cfg)
    context = base_context(cfg, model)
    set_attention(model, pick_attention(cfg.model.attn_implementation, precision, accelerator.device.type, context))
    run_checks(cfg, model, tokenizer, context)
    reference = make_reference(cfg, model)
    sampler = Sampler(cfg, tokenizer, cfg.run_dir)
    stages = [cfg]
    for s in cfg.stages:
        stage_cfg = cfg.model_copy(deep=True)
        stage_cfg.data = s.data
        stage_cfg.train.max_steps, stage_cfg.train.lr = s.max_steps or cfg.train.max_steps, s.lr or cfg.train.lr
        stages.append(stage_cfg)
    return Plan(
        model,
        tokenizer,
        context,
        stages=stages,
        data=lambda c: stage_data(c, c.data, tokenizer, context, accelerator),
        evaluators=lambda c, data: stage_evaluators(c, sampler, reference, data, tokenizer, model),
        reference=reference,
        final=[lambda m, step: sampler(m, step, force=True)],
    )
