"""Typed configuration: the same names in YAML, Python and ``key=value`` CLI overrides.

Unknown keys fail with a suggestion; the resolved config is saved with every run.
"""

from __future__ import annotations

import difflib
import math
import sys
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lmforge.core import habits
from lmforge.core.errors import LmforgeError
from lmforge.core.rl_config import RLConfig
from lmforge.core.yamlio import Loader, read_yaml


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TokenizerConfig(Section):
    path: Optional[str] = None
    """An existing tokenizer (folder, run or hub id). When empty, a BPE tokenizer is trained on the data."""
    vocab_size: int = Field(256, ge=32)
    """Total vocabulary, special tokens included (the French poet used 128)."""
    min_frequency: int = Field(2, ge=1)
    split_digits: bool = False
    """One token per digit: numbers are read and copied digit by digit (helps extraction tasks)."""


class ModelConfig(Section):
    preset: Optional[str] = None
    """Pretraining: a size preset (tiny, 1m, 3m, 10m, 40m: ``lmforge.model.PRESETS``); explicit dimensions
    below override it. Fine-tuning takes the base's size and refuses it."""
    base: Optional[str] = None
    """A pretrained model to start from: hub id, local folder or lmforge run (fine-tuning)."""
    hidden_size: Optional[int] = None
    num_layers: Optional[int] = None
    num_heads: Optional[int] = None
    num_kv_heads: Optional[int] = None
    intermediate_size: Optional[int] = None
    context: Optional[int] = None
    """Block size: tokens per training sequence and the model's maximum positions."""
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    trust_remote_code: bool = False
    """Run code shipped with a hub model: off unless you trust its author."""
    attn_implementation: Optional[str] = "auto"
    """Attention kernel for training: 'auto' (eager for bf16 on CPU up to context 512, where the CPU's
    flash kernel is slower; sdpa otherwise), 'sdpa', 'eager', or any name transformers accepts."""


class LoraConfig(Section):
    method: Literal["full", "lora", "qlora"] = "full"
    r: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    rslora: bool = False
    target_modules: Optional[list[str]] = None
    """Modules that get adapters; empty means every linear layer of the attention and MLP blocks."""
    modules_to_save: list[str] = []
    """Modules trained in full beside the adapters, e.g. [embed_tokens, lm_head]."""


class SourceConfig(Section):
    path: str
    """A file, a folder of files, or a hub dataset name."""
    weight: float = Field(1.0, gt=0)
    format: Optional[str] = None
    """Overrides data.format for this source."""
    split: str = "train"
    """The split of a hub dataset."""
    subset: Optional[str] = None
    """A hub dataset's configuration, e.g. 20231101.en for wikimedia/wikipedia."""
    max_rows: Optional[int] = Field(None, ge=1)
    """Read at most this many rows of a hub dataset, streamed (no full download of a large corpus)."""
    holdout: Optional[Literal["train", "test"]] = None
    """Rows of a file: only the fixed held-out split's train or test part (the split `lmforge eval --split` uses)."""


class DataConfig(Section):
    train: list[SourceConfig] = []
    val: list[SourceConfig] = []
    """Validation sources; when empty, ``val_fraction`` of each training source is held out (text: its end;
    rows: a random draw by seed)."""
    format: str = "text"
    """text | alpaca | chat | prompt_completion | template | any registered format."""
    template: Optional[str] = None
    """For format=template, e.g. '### Question: "{input}"\\n ### Answer: {output}'. With format=chat and no
    chat_template, it is read as chat_template (LLaMA-Factory's ``template: llama3``)."""
    chat_template: Optional[str] = None
    """format=chat/sharegpt: chatml | llama3 | zephyr | alpaca | tokenizer (its own; the default) | Jinja text."""
    assistant_turns: Literal["all", "last"] = "all"
    """format=chat/sharegpt: train on every assistant turn, or on the last only (the rest is context)."""
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    completion_only: bool = True
    """Fine-tuning: compute the loss on completion tokens only."""
    group_by_length: bool = True
    """Fine-tuning: put examples of similar length in the same batch (less padding; every example is still
    seen once per epoch, in an order drawn by the seed)."""
    packing: bool = False
    """Fine-tuning: lay examples end to end in rows of model.context tokens (no padding but a row's tail),
    each example attending only to itself, with its own positions and loss; replaces group_by_length."""

    @field_validator("train", "val", mode="before")
    @classmethod
    def _paths(cls, v: Any) -> Any:
        if isinstance(v, (str, dict)):
            v = [v]
        if v is not None and not isinstance(v, (list, tuple)):
            return v  # pydantic names the type error
        return [{"path": x} if isinstance(x, str) else x for x in (v or [])]


class TrainConfig(Section):
    objective: str = "causal_lm"
    objective_args: dict[str, Any] = {}
    optimizer: Literal["adamw", "adamw_8bit", "paged_adamw_8bit", "sgd"] = "adamw"
    """AdamW (decoupled weight decay on matrices); its 8-bit and paged 8-bit forms (bitsandbytes, CUDA: a
    quarter of AdamW's state); or plain SGD (no momentum; for invariance tests)."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of keeping them: less memory, about
    a third more compute (non-reentrant, so it works under LoRA and QLoRA too)."""
    batch_size: Union[Literal["auto"], int] = 16
    """Sequences per micro-batch on each process; auto: the largest that fits in memory (probed at start),
    with grad_accum set to keep global_batch_size."""
    global_batch_size: Optional[int] = Field(None, ge=1)
    """With batch_size: auto, sequences per optimizer step over all processes (default 16 x grad_accum x processes)."""
    memory_limit_gb: Optional[float] = Field(None, gt=0)
    """The memory batch_size: auto may fill (default: what the device has free); 20% of it is kept free."""
    grad_accum: int = Field(1, ge=1)
    lr: Union[Literal["auto"], float] = 1e-3
    """Peak learning rate; auto: a range test at start (60 steps, rate growing from 1e-6 to 1, weights put back)
    picks where the smoothed loss falls fastest; printed and saved as lr_range.json/png in the run folder."""
    lr_scheduler: Literal["cosine", "linear", "constant", "wsd"] = "cosine"
    """The rate after warmup: cosine or linear down to min_lr_ratio, constant, or wsd (warmup-stable-decay)."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(20, ge=0)
    warmup_ratio: Optional[float] = Field(None, ge=0, lt=1)
    """Warmup as a share of max_steps; when set it replaces warmup_steps."""
    decay_ratio: float = Field(0.1, gt=0, le=1)
    """wsd: the share of the post-warmup steps that decay (the rest stay at lr)."""
    max_steps: Union[Literal["auto"], int] = 200
    """Optimizer steps; auto (with max_time_s): as many as the budget holds at the step time measured at start."""
    epochs: Optional[float] = Field(None, gt=0)
    """Passes over the training data; when set, max_steps is computed from it (per stage)."""
    max_time_s: Optional[float] = Field(None, gt=0)
    """Stop after this many seconds of training; the schedule then follows the clock, so the rate reaches
    its end value when the budget ends (see lmforge/train/schedule.py)."""
    lr_follows_time: bool = True
    """With max_time_s: false keeps the schedule on steps (the rate stops wherever the budget cuts it)."""
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = False
    eval_every: int = Field(50, ge=1)
    eval_batches: int = Field(8, ge=1)
    save_every: int = Field(100, ge=1)
    keep_last: int = Field(2, ge=1)
    skip_nonfinite: int = Field(0, ge=0)
    """Steps whose loss or gradient is NaN/inf that may be skipped (no update) before the run stops; 0: stop."""
    best_metric: str = "val_loss"
    """val_loss, or any metric of eval_task (json_em, field_f1, rouge1, ...)."""
    best_mode: Literal["min", "max", "auto"] = "auto"
    eval_task: Optional[str] = None
    """A task (cantos, a task YAML, package.module:function) scored on the validation rows at each evaluation."""
    eval_constrained: bool = False
    """Decode eval_task answers under its JSON schema (always valid JSON)."""
    eval_max_new_tokens: Optional[int] = Field(None, ge=1)
    """Generation budget for eval_task; default: the longest validation answer in tokens + 16 (as lmforge eval)."""
    log_every: int = Field(10, ge=1)
    report_to: list[str] = ["tensorboard"]
    """Experiment trackers the metrics also go to: tensorboard (events in log_dir/<name>), wandb, mlflow;
    none (or []) for metrics.jsonl only. wandb follows WANDB_MODE (offline works without an account);
    mlflow writes to MLFLOW_TRACKING_URI, else to a local store in log_dir/mlruns."""

    @field_validator("batch_size", "lr", "max_steps", mode="before")
    @classmethod
    def _auto_or_positive(cls, v: Any, info) -> Any:
        if v == "auto":
            return v
        try:  # YAML reads 3e-4 as a string
            number = float(v) if isinstance(v, str) and not isinstance(v, bool) else v
        except ValueError:
            number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not number > 0:
            raise ValueError("a positive number, or auto")
        if info.field_name != "lr":
            if not math.isfinite(number) or number != int(number):
                raise ValueError("a whole number, or auto")
            return int(number)
        return float(number)

    @field_validator("report_to", mode="before")
    @classmethod
    def _trackers(cls, v: Any) -> Any:
        if v is None or isinstance(v, str):
            v = [] if v is None or v.strip().lower() in ("", "none") else [v]
        if not isinstance(v, (list, tuple)):
            return v  # pydantic names the type error
        known, out = ("tensorboard", "wandb", "mlflow"), []
        for name in v:
            key = str(name).strip().lower()
            if key not in known and key != "none":
                raise ValueError(f"unknown tracker {name!r}; choose from {', '.join(known)} or none")
            if key in known and key not in out:
                out.append(key)
        return out


class SampleConfig(Section):
    prompts: list[str] = [""]
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.8, ge=0)
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    every: int = Field(100, ge=1)


class StageConfig(Section):
    """A later stage of a multi-stage run: its own data and step count, the same adapter."""

    data: DataConfig
    max_steps: Optional[int] = None
    lr: Optional[float] = None


class RunConfig(Section):
    name: str = "run"
    seed: int = 1337
    out_dir: str = "runs"
    log_dir: str = "logs"
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    sample: SampleConfig = SampleConfig()
    stages: list[StageConfig] = []
    rl: RLConfig = RLConfig()
    """Training with rewards (``lmforge rl``): algorithm, rewards, rollouts (``lmforge/core/rl_config.py``)."""

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# What each command would silently ignore, and why: a value set there (not the default) is refused.
UNUSED = {
    "pretrain": {
        "model.base": "starting from a pretrained model is `lmforge finetune`",
        "lora": "adapters are for fine-tuning a base: `lmforge finetune`",
        "stages": "multi-stage runs are fine-tuning runs: `lmforge finetune`",
        "data.template": "pretraining reads plain text",
        "data.completion_only": "pretraining has no prompts to mask",
        "data.group_by_length": "pretraining packs text into full blocks",
        "data.packing": "pretraining packs text into full blocks already",
        "data.chat_template": "pretraining reads plain text",
        "data.assistant_turns": "pretraining reads plain text",
        "train.eval_task": "tasks are scored on fine-tuning validation rows",
        "train.eval_constrained": "tasks are scored on fine-tuning validation rows",
        "train.eval_max_new_tokens": "tasks are scored on fine-tuning validation rows",
        "rl": "training with rewards is `lmforge rl`",
    },
    "finetune": {
        "tokenizer": "fine-tuning keeps the base model's tokenizer",
        "rl": "training with rewards is `lmforge rl`",
        **{
            f"model.{k}": "fine-tuning keeps the base model's architecture"
            for k in (
                "preset",
                "hidden_size",
                "num_layers",
                "num_heads",
                "num_kv_heads",
                "intermediate_size",
                "rope_theta",
                "tie_embeddings",
                "dropout",
            )
        },
    },
}

# lmforge rl fine-tunes a base as finetune does; its algorithm chooses the objective
UNUSED["rl"] = {
    **{k: v for k, v in UNUSED["finetune"].items() if k != "rl"},
    "stages": "an RL run has one stage",
    "train.objective": "rl.algorithm chooses the objective",
    "train.objective_args": "the rl section holds the algorithm's settings",
    "train.epochs": "rollouts have no epochs: set train.max_steps",
}


def _value_and_default(cfg: BaseModel, dotted: str) -> tuple[Any, Any]:
    node, default = cfg, type(cfg)()
    for key in dotted.split("."):
        node, default = getattr(node, key), getattr(default, key)
    return node, default


def set_keys(value: Any, default: Any, prefix: str) -> list[str]:
    """The dotted keys under ``prefix`` whose value differs from the default."""
    if isinstance(value, BaseModel) and isinstance(default, BaseModel):
        return [
            k
            for name in type(value).model_fields
            for k in set_keys(getattr(value, name), getattr(default, name), f"{prefix}.{name}")
        ]
    return [] if value == default else [prefix]


def reject_unused(cfg: RunConfig, command: str) -> None:
    """One line naming the first key that ``command`` would ignore although it is set."""
    for section, why in UNUSED.get(command, {}).items():
        keys = set_keys(*_value_and_default(cfg, section), section)
        if keys:
            raise LmforgeError(f"{command} does not use {keys[0]} ({why}); remove it from the config")


def _parse_value(text: str) -> Any:
    """``key=value`` values are YAML scalars: 3e-4, true, null, [a, b] all work."""
    try:
        value = yaml.load(text, Loader=Loader)  # dates stay text; a SafeLoader: no Python objects
    except Exception:  # not YAML PyYAML can read (a bad date, an empty !!float...): the text itself
        return text
    # "### Question..." parses as a YAML comment (None): only an explicit null means null
    if value is None and text.strip() not in ("", "null", "~", "Null", "NULL"):
        return text
    return value


def apply_override(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise LmforgeError(f"override {dotted!r}: {k!r} is not a section")
    node[keys[-1]] = value


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _known_keys(ann, prefix + name + ".")
    return out


# Model-shape and step names (nanoGPT, HF configs) suggested first, since string similarity misses them; the
# fine-tuning tools' key names are read (not just suggested) by lmforge/core/habits.py.
ALIASES = {
    "block_size": "context",
    "seq_len": "context",
    "n_layer": "num_layers",
    "num_hidden_layers": "num_layers",
    "n_head": "num_heads",
    "n_embd": "hidden_size",
    "use_rslora": "rslora",
    "warmup": "warmup_steps",
    "steps": "max_steps",
    "num_steps": "max_steps",
}
# ... and the renames habits.py reads, so a misspelling of one ("learnig_rate") finds it too.
SUGGESTIONS = {**ALIASES, **{k: v.rsplit(".", 1)[-1] for k, v in habits.ANCHOR_KEYS.items() if isinstance(v, str)}}


def _suggest(loc: str, known: list[str]) -> list[str]:
    parent = loc.rsplit(".", 1)[0] + "." if "." in loc else ""
    last = loc.rsplit(".", 1)[-1]
    near = difflib.get_close_matches(last, SUGGESTIONS, 1, 0.85)
    alias = SUGGESTIONS.get(last) or (SUGGESTIONS[near[0]] if near else None)
    if alias:
        cands = [k for k in known if k.endswith("." + alias) or k == alias]
        same = [k for k in cands if k.startswith(parent)]
        if same or cands:
            return (same or cands)[:1]
    hint = difflib.get_close_matches(loc, known, n=1, cutoff=0.5)
    if not hint:  # compare the last part only among the section's keys
        sibs = [k[len(parent) :] for k in known if k.startswith(parent) and "." not in k[len(parent) :]]
        hint = [parent + h for h in difflib.get_close_matches(last, sibs, n=1, cutoff=0.4)]
    return hint


def suggest_key(dotted: str) -> Optional[str]:
    """The config key nearest to ``dotted`` (a misspelling, another tool's name for it), or None."""
    hint = _suggest(dotted, _known_keys(RunConfig))
    return hint[0] if hint else None


def _format_error(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(x) for x in e["loc"])
    last = loc.rsplit(".", 1)[-1]
    if e["type"] == "extra_forbidden" and habits.is_anchor(last):
        return f"{source}: unknown config key {loc!r}; {habits.hint(last)}"
    if e["type"] == "extra_forbidden":
        known = _known_keys(RunConfig)
        hint = _suggest(loc, known)
        return f"{source}: unknown config key {loc!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
    return f"{source}: config key {loc!r}: {e['msg']} (got {e.get('input')!r})"


def load_config(path: Optional[str | Path] = None, overrides: list[str] = (), base: Optional[dict] = None) -> RunConfig:
    """Reads YAML (or starts from ``base``), applies dotted ``key=value`` overrides, validates."""
    tree: dict = dict(base or {})
    source = "config"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise LmforgeError(f"config file not found: {p}")
        loaded = read_yaml(p) or {}
        if not isinstance(loaded, dict):
            raise LmforgeError(f"{p}: a config is a mapping of sections, got {type(loaded).__name__}")
        tree.update(loaded)
    for item in overrides:
        if "=" not in item:
            raise LmforgeError(f"override {item!r} is not key=value")
        key, _, value = item.partition("=")
        apply_override(tree, key.strip(), _parse_value(value))
    _read_anchor_keys(tree)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise LmforgeError(_format_error(err, source)) from None
    except RecursionError:
        raise LmforgeError(f"{source}: a value nested too deeply to read") from None


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """A run's saved ``config.yaml`` (then ``overrides``). A key this version does not know there means another
    lmforge version saved the run: the error says so and what to do, instead of only guessing a key."""
    try:
        load_config(path)
    except LmforgeError as e:
        if "unknown config key" not in str(e):
            raise
        raise LmforgeError(
            f"{e} (the run was saved by another lmforge version: rename or delete that key in {path})"
        ) from None
    return load_config(path, overrides)


def _read_anchor_keys(tree: dict) -> None:
    """Top-level keys other tools use (``cutoff_len``, ``learning_rate``...) become lmforge's, with a note."""
    for key in [k for k in tree if isinstance(k, str) and k not in RunConfig.model_fields and habits.is_anchor(k)]:
        value = tree.pop(key)
        mapped = habits.translate(key, value)
        for dotted, v in mapped.items():
            apply_override(tree, dotted, v)
        said = ", ".join(f"{d}={v!r}" for d, v in mapped.items()) or "nothing to change"
        print(f"lmforge: read {key}={value!r} as {said}", file=sys.stderr)


def save_config(cfg: RunConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
