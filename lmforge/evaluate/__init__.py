"""Evaluation: language-model metrics on text (``lm``), generation metrics on tasks (``metrics``, ``tasks``),
one comparison table (``report``), and ``evaluate_generation`` for the training loop's evaluation block.

    from lmforge.evaluate import evaluate_generation
    from lmforge.evaluate.tasks import load_task
    task = load_task("cantos", split="test")
    scores = evaluate_generation(model, tokenizer, task, task.rows, max_new_tokens=128, constrained=True)
    # {"json_em": ..., "field_f1": ..., "json_valid": ..., "schema_valid": ..., "exact_match": ...}
"""

from __future__ import annotations

from typing import Optional

from . import metrics  # noqa: F401  (registers the metrics)
from .tasks import Task


def generate_completions(model, tokenizer, prompts: list[str], *, max_new_tokens: int, batch_size: int = 8,
                         constrained: bool = False, schema: Optional[dict] = None) -> list[str]:
    """Greedy completions (text after the prompt) through ``lmforge.generate``, as ``lmforge generate``
    makes them (BOS first, left padding, budget capped at the model's positions); JSON-constrained if asked."""
    from ..generate import GenerationSettings, generate

    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=0.0, strategy="greedy",
                                  json_schema=(schema if schema is not None else "any") if constrained else None,
                                  batch_size=batch_size)
    was_training = model.training
    try:
        return generate(model, tokenizer, prompts, settings)
    finally:
        model.train(was_training)  # the training loop's evaluation block gets its model back as it was


def answer_budget(tokenizer, task: Task, rows: list[dict]) -> int:
    """The default generation budget: the longest reference answer of ``rows`` in tokens, plus 16."""
    return max(len(tokenizer(task.reference(r), add_special_tokens=False)["input_ids"]) for r in rows) + 16


def evaluate_generation(model, tokenizer, task: Task, rows: list[dict], *, max_new_tokens: int,
                        constrained: bool, batch_size: int = 8) -> dict[str, float]:
    """The task's metrics on greedy completions of ``rows`` (model already on its device).

    ``constrained``: decode under the task's JSON schema (any JSON if it has none); the output is then
    always valid JSON. Metric directions: ``lmforge.evaluate.metrics.higher_is_better(name)``.
    """
    completions = generate_completions(model, tokenizer, [task.prompt(r) for r in rows],
                                       max_new_tokens=max_new_tokens, batch_size=batch_size,
                                       constrained=constrained, schema=task.schema)
    return task.evaluate(completions, rows)
