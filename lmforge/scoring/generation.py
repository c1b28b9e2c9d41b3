"""Generation scored by a task: greedy completions of its rows, then the task's metrics.

    from lmforge.scoring import evaluate_generation, load_task
    task = load_task("examples/cantos/task.yaml", split="test")
    scores = evaluate_generation(model, tokenizer, task, task.rows, max_new_tokens=128, constrained=True)
    # {"json_em": ..., "field_f1": ..., "json_valid": ..., "schema_valid": ..., "exact_match": ...}

The same numbers for ``lmforge eval`` and for the training loop's evaluation block.
"""

from __future__ import annotations

from typing import Optional

from lmforge.generate import GenerationSettings, generate
from lmforge.model.modes import evaluating
from lmforge.scoring.tasks import Task


def generate_completions(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    constrained: bool = False,
    schema: Optional[dict] = None,
) -> list[str]:
    """Greedy completions (text after the prompt) through ``lmforge.generate``, as ``lmforge generate``
    makes them (BOS first, left padding, budget capped at the model's positions); JSON-constrained if asked."""
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        strategy="greedy",
        json_schema=(schema if schema is not None else "any") if constrained else None,
        batch_size=batch_size,
    )
    with evaluating(model):  # the training loop's evaluation block gets its model back as it was
        return generate(model, tokenizer, prompts, settings)


def answer_budget(tokenizer, task: Task, rows: list[dict]) -> int:
    """The default generation budget: the longest reference answer of ``rows`` in tokens, plus 16."""
    return max(len(tokenizer(task.reference(r), add_special_tokens=False)["input_ids"]) for r in rows) + 16


def evaluate_generation(
    model, tokenizer, task: Task, rows: list[dict], *, max_new_tokens: int, constrained: bool, batch_size: int = 8
) -> dict[str, float]:
    """The task's metrics on greedy completions of ``rows`` (model already on its device).

    ``constrained``: decode under the task's JSON schema (any JSON if it has none); the output is then
    always valid JSON. Metric directions: ``lmforge.scoring.metrics.direction(name)``.
    """
    completions = generate_completions(
        model,
        tokenizer,
        [task.prompt(r) for r in rows],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        constrained=constrained,
        schema=task.schema,
    )
    return task.evaluate(completions, rows)
