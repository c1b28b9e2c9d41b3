"""Training with rewards, planned for ``run.py``: the base as fine-tuning loads it, the reference (the
adapter-disabled model under LoRA, a frozen copy otherwise), rollouts (or preference pairs) as the batch
source, and the algorithm's objective. The loop, checkpoints, resume and logging are every run's.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.core.config import RunConfig
from lmforge.core.errors import LmforgeError
from lmforge.data.batches import Layout
from lmforge.data.readers import read_rows
from lmforge.data.split import split_rows
from lmforge.losses.log_z import LogZHead
from lmforge.losses.objectives import make_reference
from lmforge.model import pick_attention, set_attention
from lmforge.rewards import Rewards, RewardTerm
from lmforge.scoring import load_task
from lmforge.train import finetune as ft
from lmforge.train.plan import Plan
from lmforge.train.rollouts import PairBatches, RewardEvaluator, Rollouts, split_prompts
from lmforge.train.samples import Sampler


def objective_args(cfg: RunConfig) -> dict:
    """The algorithm's settings, from the rl section, as its objective takes them."""
    rl = cfg.rl
    return {
        "rloo": {"kl_coef": rl.kl_coef, "clip_eps": rl.clip_eps},
        "grpo": {"kl_coef": rl.kl_coef, "clip_eps": rl.clip_eps},
        "tb": {"reward_scale": rl.reward_scale},
        "subtb": {"reward_scale": rl.reward_scale, "subtb_lambda": rl.subtb_lambda},
        "dpo": {"beta": rl.dpo_beta, "label_smoothing": rl.label_smoothing},
    }[rl.algorithm]


def load_prompts(cfg: RunConfig) -> list[dict]:
    """Rows with a "prompt" (and columns for the rewards): rl.prompts, rl.prompts_file or rl.task's train split."""
    rl = cfg.rl
    given = [bool(rl.prompts), bool(rl.prompts_file), bool(rl.task)]
    if sum(given) != 1:
        raise LmforgeError("rl: give the prompts one way: rl.prompts, rl.prompts_file or rl.task")
    if rl.prompts:
        return [{"prompt": p.replace("\\n", "\n")} for p in rl.prompts]
    if rl.task:
        task = load_task(rl.task, split="train")
        return [{**row, "prompt": task.prompt(row)} for row in task.rows]
    path = Path(rl.prompts_file)
    if not path.is_file():
        raise LmforgeError(f"rl.prompts_file: not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise LmforgeError(f"{path}:{n}: a row is an object with a string 'prompt'")
            rows.append(row)
    return rows


def load_pairs(cfg: RunConfig) -> tuple[list[dict], list[dict]]:
    """Preference rows {prompt, chosen, rejected} from data.train (validation: data.val or data.val_fraction)."""
    rows = [r for s in cfg.data.train for r in read_rows(s.path)]
    for n, r in enumerate(rows, 1):
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(r.get(key), str):
                raise LmforgeError(f"{cfg.data.train[0].path}: row {n}: {key!r} must be a string")
    if cfg.data.val:
        return rows, [r for s in cfg.data.val for r in read_rows(s.path)]
    if cfg.data.val_fraction == 0:
        return rows, []
    return split_rows(rows, "train", cfg.seed, cfg.data.val_fraction), split_rows(
        rows, "test", cfg.seed, cfg.data.val_fraction
    )


def make_rewards(cfg: RunConfig) -> Rewards:
    return Rewards([RewardTerm.make(r.name, r.weight, r.args, r.label) for r in cfg.rl.rewards])


def plan(cfg: RunConfig, accelerator, precision: str, resume: bool) -> Plan:
    rl = cfg.rl
    if rl.algorithm is None:
        raise LmforgeError("rl.algorithm: choose rloo, grpo, tb, subtb or dpo")
    if rl.algorithm != "dpo" and cfg.data.train:
        raise LmforgeError("rl: data.train is read by rl.algorithm=dpo only; rollouts take rl.prompts")
    tokenizer, model = ft.load_base(cfg)
    context = cfg.model.context or min(getattr(model.config, "max_position_embeddings", 1024), 1024)
    set_attention(model, pick_attention(cfg.model.attn_implementation, precision, accelerator.device.type, context))
    ft.run_checks(cfg, model, tokenizer, context)
    reference = make_reference(model, peft=cfg.lora.method != "full")
    stage = cfg.model_copy(deep=True)
    stage.train.objective, stage.train.objective_args = rl.algorithm, objective_args(cfg)
    layout = Layout(cfg.train.batch_size, cfg.train.grad_accum, accelerator.num_processes, accelerator.process_index)
    sampler = Sampler(cfg, tokenizer, cfg.run_dir)
    if rl.algorithm == "dpo" and cfg.data.train:  # pairs from a file; otherwise from the rollouts (best vs worst)
        train_rows, val_rows = load_pairs(cfg)
        pairs = PairBatches(train_rows, val_rows, tokenizer, layout, cfg.seed, context)
        return Plan(model, tokenizer, context, [stage], data=lambda c: pairs, reference=reference,
                    evaluators=lambda c, d: (sampler,), final=[lambda m, s: sampler(m, s, force=True)])  # fmt: skip
    rewards = make_rewards(cfg)
    train_prompts, eval_prompts = split_prompts(load_prompts(cfg), rl.eval_prompts)
    evaluator = RewardEvaluator(cfg, tokenizer, eval_prompts, rewards, reference)
    heads = {"log_z_head": LogZHead(model.config.hidden_size, rl.log_z_lr)} if rl.log_z == "learned" else {}
    return Plan(
        model,
        tokenizer,
        context,
        [stage],
        data=lambda c: Rollouts(c, model, tokenizer, train_prompts, rewards, layout, reference),
        evaluators=lambda c, d: (sampler, evaluator),
        reference=reference,
        final=[lambda m, s: sampler(m, s, force=True)],
        heads=heads,
    )
