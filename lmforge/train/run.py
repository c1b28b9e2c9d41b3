"""The run orchestrator: one path for pretraining and fine-tuning, from a config to ``runs/<name>/model``.

It owns what every run shares, decided once: the precision and the accelerator built from it, the
sections a command reads (a set key it would ignore is refused), resuming (the step comes from the
last checkpoint's ``state.json``, nothing else), the stages in order, and the final save. What differs
(tokenizer and model, batches, evaluators) comes from ``pretrain.plan`` or ``finetune.plan``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import torch

from lmforge.core.config import RunConfig, load_run_config, reject_unused, save_config
from lmforge.core.errors import LmforgeError
from lmforge.model import enable_gradient_checkpointing, save_model_folder
from lmforge.train import finetune as ft
from lmforge.train import pretrain as pt
from lmforge.train import rl as rlp
from lmforge.train.auto import resolve_auto
from lmforge.train.checkpoint import HEADS, disk_full_is_an_error, latest_checkpoint, restore_weights, save_heads
from lmforge.train.derived import describe, memory_estimate, print_derived, process_memory
from lmforge.train.loop import EvalHook, train


def pick_precision(precision: str) -> str:
    """'auto' -> bf16 where the hardware computes it natively (CUDA bf16, CPUs with AVX-512 BF16/AMX)."""
    if precision != "auto":
        return {"fp32": "no"}.get(precision, precision)
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"


def make_accelerator(cfg: RunConfig, precision: Optional[str] = None):
    """A fresh accelerate ``Accelerator`` for this run, seeded (DDP/FSDP come from ``accelerate launch``)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one progress bar per run: ours
    set_seed(cfg.seed)
    AcceleratorState._reset_state(True)  # a second run in the same process may use another precision
    return Accelerator(
        mixed_precision=precision or pick_precision(cfg.train.precision), cpu=not torch.cuda.is_available()
    )


def pretrain(cfg: RunConfig, resume: bool = False, quiet: bool = False, on_eval: Optional[EvalHook] = None) -> Path:
    """Trains a tokenizer (unless given) and a model from scratch; returns the run folder."""
    if cfg.model.base:
        raise LmforgeError("model.base is set: starting from a pretrained model is `lmforge finetune`")
    return run(cfg, "pretrain", resume=resume, quiet=quiet, on_eval=on_eval)


def finetune(cfg: RunConfig, resume: bool = False, quiet: bool = False, on_eval: Optional[EvalHook] = None) -> Path:
    """Fine-tunes ``model.base`` on ``data`` then on each of ``stages``; returns the run folder."""
    if not cfg.model.base:
        raise LmforgeError("model.base: set the model to fine-tune (hub id, folder or lmforge run)")
    return run(cfg, "finetune", resume=resume, quiet=quiet, on_eval=on_eval)


def rl(cfg: RunConfig, resume: bool = False, quiet: bool = False) -> Path:
    """Trains ``model.base`` with rewards (rollouts) or preference pairs (``rl.algorithm``); returns the run folder."""
    if not cfg.model.base:
        raise LmforgeError("model.base: set the model to train with rewards (hub id, folder or lmforge run)")
    if cfg.train.batch_size == "auto":  # the memory probe measures one sequence per row, not what a row is here
        row = (
            "pairs per micro-batch (a chosen and a rejected sequence each)"
            if cfg.rl.algorithm == "dpo" and cfg.data.train
            else f"prompts per micro-batch (each one is rl.num_generations={cfg.rl.num_generations} sampled sequences)"
        )
        raise LmforgeError(f"train.batch_size=auto is not chosen for lmforge rl: set the {row} and train.grad_accum")
    return run(cfg, "rl", resume=resume, quiet=quiet)


def resume(run_dir: str | Path, overrides: list[str] = ()) -> Path:
    """Continues a run from its last checkpoint, as the command that started it (its saved config says)."""
    cfg_path = Path(run_dir) / "config.yaml"
    if not cfg_path.is_file():
        raise LmforgeError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = load_run_config(cfg_path, overrides)
    command = "rl" if cfg.rl.algorithm else "finetune" if cfg.model.base else "pretrain"
    return run(cfg, command, resume=True)


def run(
    cfg: RunConfig, command: str, resume: bool = False, quiet: bool = False, on_eval: Optional[EvalHook] = None
) -> Path:
    """Plans the run, then trains each stage through the one loop, then saves ``model/``; ``on_eval`` is told
    each evaluation (``loop.EvalHook``)."""
    reject_unused(cfg, command)
    precision = pick_precision(cfg.train.precision)
    accelerator = make_accelerator(cfg, precision)
    run_dir = cfg.run_dir
    last = latest_checkpoint(run_dir, verify=True) if resume else None
    if resume and last is None:
        raise LmforgeError(f"{run_dir}: no checkpoint to resume from")
    done = json.loads((last / "state.json").read_text(encoding="utf-8"))["step"] if last else 0
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    plan = {"pretrain": pt, "rl": rlp}.get(command, ft).plan(cfg, accelerator, precision, resume)
    if cfg.train.gradient_checkpointing:
        enable_gradient_checkpointing(plan.model)
    say = print if accelerator.is_main_process else lambda s: None
    if resolve_auto(cfg, plan, accelerator, say) and accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")  # with the values chosen: a resume reuses them

    offset, step = 0, done
    restored = last is None  # the checkpoint's weights are in the model (or there is none)
    for i, stage_cfg in enumerate(plan.stages):
        data = None
        if stage_cfg.train.epochs:  # the step count comes from the data
            data = plan.data(stage_cfg)
            stage_cfg.train.max_steps = max(1, math.ceil(stage_cfg.train.epochs * data.steps_per_epoch()))
        steps = stage_cfg.train.max_steps
        if offset + steps <= done:  # finished before the interruption
            offset += steps
            continue
        if not restored and done == offset:  # killed right after an earlier stage's last checkpoint
            restore_weights(last, plan.model, plan.heads)
            restored = True
        data = data or plan.data(stage_cfg)
        if accelerator.is_main_process and not quiet:
            tokens = cfg.train.batch_size * cfg.train.grad_accum * accelerator.num_processes * plan.context
            if len(plan.stages) > 1:
                print(
                    f"stage {i + 1}/{len(plan.stages)}: {steps} steps on "
                    f"{', '.join(s.path for s in stage_cfg.data.train)}"
                )
            name = "derived.json" if len(plan.stages) == 1 else f"derived-stage{i + 1}.json"
            d = describe(plan.model, plan.context, tokens, steps, precision, accelerator.device, cfg.train.max_time_s)
            d["memory"] = memory_estimate(
                plan.model,
                cfg.train.batch_size,
                plan.context,
                precision,
                cfg.train.optimizer,
                cfg.train.gradient_checkpointing,
                in_use=process_memory(accelerator.device),
            )
            print_derived(d, run_dir / name)
        result = train(
            stage_cfg,
            plan.model,
            plan.tokenizer,
            data,
            accelerator=accelerator,
            reference=plan.reference,
            evaluators=plan.evaluators(stage_cfg, data),
            resume_from=last if not restored else None,
            step_offset=offset,
            on_eval=on_eval,
            heads=plan.heads,
        )
        step, restored = offset + result.step, True
        if result.interrupted:
            break
        offset += steps

    if not restored:  # killed after the last checkpoint, before the model was saved: nothing left to train
        restore_weights(last, plan.model, plan.heads)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(plan.model)
        with disk_full_is_an_error(run_dir / ".model.tmp", run_dir):
            save_model_folder(final, plan.tokenizer, run_dir / "model")
            if plan.heads:  # beside the weights (loaders read their own files by name and pass this one by)
                save_heads(plan.heads, run_dir / "model" / HEADS)
        for fn in plan.final:
            fn(final, step)
    return run_dir
