"""Rewards on structured output and from a task, and the reference model's fluency.

Each is ``fn(prompts, completions, **columns) -> list[float]``, TRL's reward signature: ``columns`` are the
prompt rows' other fields (a task's reference answer, a schema...), one list entry per completion.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import REWARDS
from lmforge.rewards.combine import completion_text
from lmforge.scoring import metrics as M
from lmforge.scoring.tasks import load_task


@REWARDS.register("json_valid")
def json_valid(prompts: list, completions: list, **columns: Any) -> list[float]:
    """1 for a completion that parses as JSON (outer blanks ignored), else 0."""
    return [M.json_valid(completion_text(c).strip()) for c in completions]


def _schema(schema: Any) -> Optional[dict]:
    if isinstance(schema, str):
        p = Path(schema)
        if not p.is_file():
            raise LmforgeError(f"rewards: schema file not found: {p}")
        return json.loads(p.read_text(encoding="utf-8"))
    return schema


@REWARDS.register("schema_valid")
def schema_valid(prompts: list, completions: list, schema: Any = None, **columns: Any) -> list[float]:
    """1 for JSON that satisfies ``schema`` (a dict or a JSON file; a ``schema`` column per row also works)."""
    fixed = _schema(schema)
    rows = columns.get("schema")
    return [
        M.schema_valid(
            completion_text(c).strip(), schema=fixed if fixed is not None else _schema(rows[i]) if rows else None
        )
        for i, c in enumerate(completions)
    ]


_TASKS: dict = {}


@REWARDS.register("score")
def score(
    prompts: list, completions: list, task: Optional[str] = None, metric: Optional[str] = None, **columns: Any
) -> list[float]:
    """The task's own ``score()`` (its ``reward_metric``), so training and evaluation agree on "correct";
    ``metric`` scores with another of the metrics instead (e.g. json_em beside the task's field_f1).

    The rows are rebuilt from ``columns`` (the task's input and reference output of each prompt)."""
    if not task:
        raise LmforgeError("rewards: score needs args.task (a task YAML, name or package.module:function)")
    if task not in _TASKS:
        _TASKS[task] = load_task(task)
    t = _TASKS[task]
    if metric is not None:
        if M.METRICS.get(metric).fn is None:  # an unknown name fails here, with a suggestion
            raise LmforgeError(f"rewards: score's metric {metric!r} is computed on whole texts, not per answer")
        t = replace(t, reward_metric=metric)
    if t.output_key not in columns:
        raise LmforgeError(f"rewards: score needs the prompts' {t.output_key!r} column (rl.task gives it)")
    rows = [{k: v[i] for k, v in columns.items() if isinstance(v, list)} for i in range(len(completions))]
    return [t.score(completion_text(c), row) for c, row in zip(completions, rows)]


def fluency(prompts: list, completions: list, ref_mean_logprob: Optional[list] = None, **columns: Any) -> list[float]:
    """The reference model's mean log-likelihood per token of each completion (the adapter-disabled model
    under LoRA); the rollouts compute it and pass it as the ``ref_mean_logprob`` column."""
    if ref_mean_logprob is None:
        raise LmforgeError("rewards: fluency needs the reference model's log-probabilities (run it through lmforge rl)")
    return [float(x) for x in ref_mean_logprob]


fluency.needs_reference = True
REWARDS.register("fluency")(fluency)
