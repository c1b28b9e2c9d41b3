"""``Plan``: what a run trains, as ``pretrain.plan`` and ``finetune.plan`` hand it to the orchestrator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from lmforge.core.config import RunConfig


@dataclass
class Plan:
    """What a run trains: the model and its tokenizer, then each stage's config and batch source."""

    model: Any
    tokenizer: Any
    context: int
    stages: list[RunConfig]
    """One config per stage: its data, max_steps and lr; the rest is the run's."""
    data: Callable[[RunConfig], Any]
    """The batch source of a stage, built when the stage starts."""
    evaluators: Callable[[RunConfig, Any], tuple] = lambda cfg, data: ()
    """The stage's evaluators (samples, task scores...), given its batch source."""
    reference: Optional[Callable] = None
    final: list[Callable] = field(default_factory=list)
    """Called with (model, step) once the final model is saved (last samples)."""
    heads: dict = field(default_factory=dict)
    """Modules trained beside the model, by the objective's keyword (TB's log_z_head); saved with it."""
