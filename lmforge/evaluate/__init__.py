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

import torch

from . import metrics  # noqa: F401  (registers the metrics)
from .tasks import Task


@torch.no_grad()
def generate_completions(model, tokenizer, prompts: list[str], *, max_new_tokens: int, batch_size: int = 8,
                         constrained: bool = False, schema: Optional[dict] = None) -> list[str]:
    """Greedy completions (text after the prompt, special tokens dropped); JSON-constrained if asked."""
    from transformers import LogitsProcessorList

    from ..constrained import json_logits_processor

    device = next(model.parameters()).device
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # batched generation continues every row from its last real token
    out: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True).to(device)
            procs = None
            if constrained:  # a fresh processor per call: it keeps one grammar state per row
                vocab = int(model.config.vocab_size)
                procs = LogitsProcessorList([json_logits_processor(tokenizer, schema, max_new_tokens, vocab, greedy=True)])
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, logits_processor=procs,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            out += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        model.train(was_training)
        tokenizer.padding_side = side
    return out


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
