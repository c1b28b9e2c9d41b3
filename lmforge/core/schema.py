"""The configuration's schema: one pydantic model per section, the same names in YAML, Python and ``key=value``
overrides. Loading, overrides and key suggestions are ``lmforge.core.config``'s.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lmforge.core.rl_config import RLConfig


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
