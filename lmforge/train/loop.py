"""The one training loop: pretraining, fine-tuning, every objective. Read it top to bottom.

Stages differ only in where batches come from (``data.train_step(step)``) and which objective
computes the loss. accelerate places the model, runs mixed precision and DDP/FSDP/DeepSpeed; the run
orchestrator (``run.py``) builds the accelerator, decides what to resume from and saves the final model.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

import lmforge.losses.objectives  # noqa: F401  (registers the built-in objectives)
import lmforge.losses.rl_objectives  # noqa: F401  (and the reward-driven ones)
from lmforge.core.config import RunConfig, TrainConfig
from lmforge.core.errors import LmforgeError
from lmforge.core.registry import OBJECTIVES
from lmforge.losses.common import forward_logits, token_nll_sum
from lmforge.model.modes import evaluating
from lmforge.scoring.metrics import higher_is_better
from lmforge.train import checkpoint as ckpt
from lmforge.train.logging import RunLogger
from lmforge.train.schedule import make_scheduler

# An evaluator adds metrics in the evaluation block: (model, step) -> {"name": value}.
Evaluator = Callable[[torch.nn.Module, int], dict]
# Told each evaluation's metrics once they are logged: (step, metrics); whatever it raises (a sweep's pruned
# trial) ends training there and reaches the caller. Single-process runs: the others would wait for this one.
EvalHook = Callable[[int, dict], None]


@dataclass
class TrainResult:
    step: int
    best_metric: Optional[float]
    losses: list[float] = field(default_factory=list)
    interrupted: bool = False


def make_optimizer(model, cfg: TrainConfig, heads: Optional[dict] = None) -> torch.optim.Optimizer:
    """AdamW (or plain SGD); weight decay on matrices only (not norms, biases). Each head (a module trained
    beside the model, e.g. TB's log Z) is one more group, at its own ``lr``, without weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups += [{"params": list(h.parameters()), "weight_decay": 0.0, "lr": h.lr} for h in (heads or {}).values()]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, foreach=True)
    if cfg.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        return _bnb_optimizer(cfg, groups)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), foreach=True)


def _bnb_optimizer(cfg: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """bitsandbytes' 8-bit AdamW (paged: its state can spill to CPU memory under pressure); CUDA only."""
    if not torch.cuda.is_available():
        raise LmforgeError(f"train.optimizer={cfg.optimizer} needs a CUDA GPU (bitsandbytes); here use adamw")
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise LmforgeError(
            f"train.optimizer={cfg.optimizer} needs bitsandbytes: pip install 'lmforge[qlora]'"
        ) from None
    cls = bnb.optim.PagedAdamW8bit if cfg.optimizer == "paged_adamw_8bit" else bnb.optim.AdamW8bit
    return cls(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def train(
    cfg: RunConfig,
    model,
    tokenizer,
    data,
    *,
    accelerator,
    reference=None,
    evaluators: tuple[Evaluator, ...] = (),
    resume_from: Optional[Path] = None,
    step_offset: int = 0,
    logger: Optional[RunLogger] = None,
    on_eval: Optional[EvalHook] = None,
    heads: Optional[dict[str, torch.nn.Module]] = None,
) -> TrainResult:
    """Trains ``model`` on ``data`` for ``cfg.train.max_steps`` optimizer steps; saves into ``cfg.run_dir``.

    ``resume_from``: a checkpoint whose weights, optimizer, schedule and RNG are restored first; its step
    (from its ``state.json``) is where training goes on. ``step_offset`` numbers the steps of a later
    stage after the earlier ones (checkpoints, logs). ``heads``: modules trained beside the model, passed to the
    objective by name (TB's ``log_z_head``), saved and restored with each checkpoint, as is the batch source's
    own state (``data.state_dict()``: the replay buffer of rollouts) where it has one.
    """
    tc = cfg.train
    run_dir = cfg.run_dir
    spec = OBJECTIVES.get(tc.objective)
    if spec.needs_reference and reference is None:
        raise LmforgeError(f"train.objective={tc.objective} needs a reference model")
    objective = spec.bind(tc.objective_args, tokenizer)
    heads = {name: h.to(accelerator.device) for name, h in (heads or {}).items()}
    if heads:
        objective = functools.partial(objective, **heads)
    optimizer = make_optimizer(model, tc, heads)
    clock = {"start": time.time(), "before": 0.0}  # training seconds: this process's, plus the resumed run's

    def elapsed() -> float:
        return clock["before"] + time.time() - clock["start"]

    scheduler = make_scheduler(optimizer, tc, elapsed)
    # the scheduler stays outside accelerate: prepared, it steps once per process per call (it assumes
    # each process sees 1/world of the batches), which would decay the lr `world` times too fast
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    if tc.compile:
        wrapped = torch.compile(wrapped)
    logger = logger or RunLogger(cfg, accelerator.is_main_process)

    state: dict = {"best": None, "best_step": None, "elapsed_s": 0.0}
    step = 0
    if resume_from is not None:
        state = ckpt.load_checkpoint(resume_from, model, optimizer, scheduler, heads)
        step = state["step"] - step_offset
        _restore_data_state(data, ckpt.load_data_state(resume_from), accelerator, logger)
        logger.info(f"resumed from {resume_from} at step {state['step']}")

    higher = higher_is_better(tc.best_metric) if tc.best_mode == "auto" else tc.best_mode == "max"
    world = accelerator.num_processes
    result = TrainResult(step=step, best_metric=state.get("best"))
    clock.update(start=time.time(), before=state.get("elapsed_s", 0.0))
    logger.start(step, tc.max_steps)

    def save(at: int) -> None:
        accelerator.wait_for_everyone()
        data_state = None
        if hasattr(data, "state_dict"):  # each process's own (its share of the prompts), in rank order
            data_state = [data.state_dict()]
            if world > 1:
                from accelerate.utils import gather_object

                data_state = gather_object(data_state)
        if accelerator.is_main_process:
            extra = {k: state.get(k) for k in ("best", "best_step", "skipped")} | {"elapsed_s": elapsed()}
            ckpt.save_checkpoint(
                run_dir,
                at + step_offset,
                accelerator.unwrap_model(model),
                tokenizer,
                optimizer,
                scheduler,
                extra,
                tc.keep_last,
                heads=heads,
                data_state=data_state,
            )

    try:
        while step < tc.max_steps:
            # ---- one optimizer step: micro-batches for this process, losses already / global tokens
            wrapped.train()
            micro_batches = data.train_step(step)
            step_loss = 0.0
            for i, mb in enumerate(micro_batches):
                mb = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in mb.items()}
                sync = i == len(micro_batches) - 1
                with nullcontext() if sync or world == 1 else accelerator.no_sync(wrapped):
                    with accelerator.autocast():
                        loss, _ = objective(wrapped, mb, reference)
                    # DDP averages gradients over processes; the loss is a share of the global sum
                    accelerator.backward(loss * world)
                step_loss += loss.detach().float().item()
            step_loss = accelerator.reduce(torch.tensor(step_loss, device=accelerator.device), "sum").item()
            if heads and world > 1:  # heads are outside DDP: their gradients averaged as DDP averages the model's
                for p in (p for h in heads.values() for p in h.parameters() if p.grad is not None):
                    p.grad = accelerator.reduce(p.grad, "mean")
            # the norm is measured even without clipping (max_norm inf clips nothing): a NaN gradient stops too
            grad_norm = float(accelerator.clip_grad_norm_(wrapped.parameters(), tc.grad_clip or math.inf))
            lr = scheduler.get_last_lr()[0]  # the rate this step is taken with
            bad = _nonfinite(step_loss, grad_norm)
            if bad and state.get("skipped", 0) >= tc.skip_nonfinite:
                raise LmforgeError(
                    f"{bad} at step {step + step_offset}; stopped without saving it (last good checkpoint kept in "
                    f"{run_dir / 'checkpoints'}); lower train.lr, check the data, or set train.skip_nonfinite"
                )
            if bad:  # skipped as large-scale trainers do: no update, the schedule and the data move on
                state["skipped"] = state.get("skipped", 0) + 1
                logger.info(f"{bad} at step {step + step_offset}: skipped ({state['skipped']} of {tc.skip_nonfinite})")
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if not bad:
                result.losses.append(step_loss)
                # real tokens only: padding is not throughput
                tokens = sum(_real_tokens(mb) for mb in micro_batches) * world
                logger.step(step + step_offset, step_loss, lr, tokens, grad_norm)
            if hasattr(data, "step_metrics"):  # rollouts: the reward and each of its components, lengths
                logger.scalars(step + step_offset, "rollout", data.step_metrics())

            # ---- evaluation, samples, best checkpoint (also when the time budget ends the run)
            out_of_time = bool(tc.max_time_s) and elapsed() > tc.max_time_s
            if tc.max_time_s and world > 1:  # every process must stop (and evaluate) at the same step
                flag = torch.tensor(float(out_of_time), device=accelerator.device)
                out_of_time = accelerator.reduce(flag, "sum").item() > 0
            if step % tc.eval_every == 0 or step == tc.max_steps or out_of_time:
                metrics = evaluate(wrapped, data, objective, reference, tc.eval_batches, accelerator)
                for fn in evaluators if accelerator.is_main_process else ():  # samples, task scores: once
                    metrics.update(fn(accelerator.unwrap_model(model), step + step_offset))
                logger.eval(step + step_offset, metrics)
                value = metrics.get(tc.best_metric)
                if value is not None and accelerator.is_main_process and _improves(value, state.get("best"), higher):
                    state["best"], state["best_step"] = value, step + step_offset
                    ckpt.save_best(accelerator.unwrap_model(model), tokenizer, run_dir, step + step_offset, heads)
                    result.best_metric = value
                if on_eval is not None and accelerator.is_main_process:
                    on_eval(step + step_offset, metrics)
            if step % tc.save_every == 0 or step == tc.max_steps:
                save(step)
            if out_of_time:
                logger.info(f"time budget of {tc.max_time_s:.0f}s reached at step {step + step_offset}")
                if step % tc.save_every:
                    save(step)
                break
    except KeyboardInterrupt:
        logger.info(f"interrupted: saving step {step + step_offset} and exiting")
        save(step)
        result.interrupted = True
    finally:
        logger.close()
    result.step = step
    return result


@torch.no_grad()
def evaluate(model, data, objective, reference, max_batches: int, accelerator) -> dict:
    """Validation loss (the objective's) and, from the next-token NLL, bits per character."""
    loss_sum = nll_sum = n = 0.0
    with evaluating(model):
        for b in data.val_batches(max_batches):
            b = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in b.items()}
            with accelerator.autocast():
                loss, metrics = objective(model, b, reference)
                nll = (
                    metrics["nll_sum"] if "nll_sum" in metrics else token_nll_sum(forward_logits(model, b), b["labels"])
                )
            loss_sum += loss.float().item() * b["num_tokens"]
            nll_sum += float(nll)
            n += b["num_tokens"]
    totals = accelerator.reduce(torch.tensor([loss_sum, nll_sum, n], device=accelerator.device), "sum").tolist()
    if totals[2] == 0:
        return {}
    out = {"val_loss": totals[0] / totals[2], "val_nll": totals[1] / totals[2]}
    out["val_ppl"] = math.exp(min(out["val_nll"], 50))
    cpt = getattr(data, "chars_per_token", None)
    if cpt:
        out["val_bpc"] = out["val_nll"] / cpt / math.log(2)
        out["val_nats_per_char"] = out["val_nll"] / cpt
    return out


def _restore_data_state(data, saved: Optional[list], accelerator, logger) -> None:
    """The batch source's state as the checkpoint saved it, this process's share; none saved: as it starts."""
    if saved is None or not hasattr(data, "load_state_dict"):
        return
    if len(saved) != accelerator.num_processes:
        logger.info(
            f"rollout state saved by {len(saved)} processes, resumed on {accelerator.num_processes}: not restored"
        )
        return
    data.load_state_dict(saved[accelerator.process_index])


def _real_tokens(batch: dict) -> int:
    """Tokens that are not padding: packed rows say so (their mask is 4-D), padded ones count their mask."""
    if "real_tokens" in batch:
        return int(batch["real_tokens"])
    return int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()


def _nonfinite(loss: float, grad_norm: float) -> Optional[str]:
    """What went non-finite in a step (the loss first), or None."""
    if not math.isfinite(loss):
        return f"loss became {loss}"
    if not math.isfinite(grad_norm):
        return f"gradient norm became {grad_norm}"
    return None


def _improves(value: float, best: Optional[float], higher: bool) -> bool:
    """Strict improvement: ties go to the earlier checkpoint."""
    if best is None:
        return True
    return value > best if higher else value < best
