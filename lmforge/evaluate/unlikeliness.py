"""The least-likely study table: one row per predictor (the reference's argmax, its negated logits,
random tokens, trained models), measured against a reference model at every position of held-out text
(``lmforge eval MODEL --unlikeliness REFERENCE --text FILE``). The measures are in
``lmforge.scoring.unlikeliness``.

A predictor is ``fn(batch, ref_logits) -> LongTensor (B, T)``: one token per position, where position
t has seen tokens 0..t.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Optional

import torch

from lmforge.losses.least_likely import argmin_targets, contextual_argmin_targets
from lmforge.model.vocab import fit_mask, well_formed_mask
from lmforge.scoring.unlikeliness import concat_stats, position_stats, summarize

Predictor = Callable[[dict, torch.Tensor], torch.Tensor]


def model_argmax(model) -> Predictor:
    """A (trained) model's own most likely token."""

    def predict(batch, ref_logits):
        return model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits.argmax(-1)

    return predict


def reference_argmax() -> Predictor:
    return lambda batch, ref_logits: ref_logits.argmax(-1)


def negated_reference(allowed: Optional[torch.Tensor] = None) -> Predictor:
    """The no-training baseline: the reference's argmin (argmax of -z), among ``allowed`` if given."""

    def predict(batch, ref_logits):
        return argmin_targets(ref_logits, None if allowed is None else fit_mask(allowed, ref_logits.size(-1)))

    return predict


def contextual_negated_reference(allowed: Optional[torch.Tensor] = None, bottom: float = 0.02) -> Predictor:
    """No training either: among the reference's bottom tokens, the most unusually unlikely in this context
    (``lmforge.losses.least_likely.contextual_argmin_targets``, token means over the batch)."""

    def predict(batch, ref_logits):
        keep = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).bool()
        mask = None if allowed is None else fit_mask(allowed, ref_logits.size(-1))
        return contextual_argmin_targets(ref_logits, keep, mask, bottom)

    return predict


def random_token(vocab_size: int, seed: int = 0, allowed: Optional[torch.Tensor] = None) -> Predictor:
    """A uniformly random token (among ``allowed`` if given), seeded."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.arange(vocab_size) if allowed is None else fit_mask(allowed, vocab_size).nonzero().squeeze(-1)

    def predict(batch, ref_logits):
        idx = torch.randint(len(pool), batch["input_ids"].shape, generator=gen)
        return pool[idx].to(ref_logits.device)

    return predict


def context_windows(tokenizer, texts: Iterable[str], context: int, max_windows: Optional[int] = None) -> torch.Tensor:
    """Non-overlapping windows of ``context`` tokens (W, context) from the concatenated texts."""
    ids: list[int] = []
    for t in texts:
        ids += tokenizer(t, add_special_tokens=False)["input_ids"]
    n = len(ids) // context
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise ValueError(f"the texts hold {len(ids)} tokens, fewer than one window of context={context}")
    return torch.tensor(ids[: n * context]).view(n, context)


@torch.no_grad()
def unlikeliness_table(
    reference_model,
    candidates: dict[str, Predictor],
    tokenizer,
    texts: Iterable[str],
    context: int,
    batch_size: int = 8,
    max_windows: Optional[int] = None,
) -> list[dict]:
    """One row per candidate (name first), measured at every position of held-out windows."""
    reference_model.eval()
    windows = context_windows(tokenizer, texts, context, max_windows)
    device = next(reference_model.parameters()).device
    V = reference_model.get_output_embeddings().weight.size(0)
    allowed = well_formed_mask(tokenizer, V)
    parts: dict[str, list] = {name: [] for name in candidates}
    for i in range(0, len(windows), batch_size):
        ids = windows[i : i + batch_size].to(device)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        ref = reference_model(**batch).logits  # (B, T, V)
        for name, predict in candidates.items():
            preds = predict(batch, ref)
            parts[name].append(position_stats(ref.reshape(-1, V), preds.reshape(-1), allowed))
    return [{"name": name, **summarize(concat_stats(p))} for name, p in parts.items()]


COLUMNS = ("median_rank", "mean_rank", "hit@1", "hit@10", "surprisal_ratio", "distinct", "top_share", "well_formed")


def format_table(rows: list[dict], columns: Iterable[str] = COLUMNS) -> str:
    """A Markdown table of ``unlikeliness_table`` rows."""
    columns = list(columns)
    lines = ["| predictor | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r in rows:
        cells = [f"{int(r[c])}" if c == "distinct" else f"{r[c]:.3f}" for c in columns]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def baselines(tokenizer, V: int, bottom: float = 0.02, seed: int = 0) -> dict[str, Predictor]:
    """The untrained comparisons: the reference's favourite, its negation (with and without the
    well-formed mask), the contextual negation, and random tokens."""
    allowed = well_formed_mask(tokenizer, V)
    return {
        "reference argmax": reference_argmax(),
        "negated logits": negated_reference(),
        "negated logits, well-formed": negated_reference(allowed),
        f"contextual negated, well-formed, bottom {bottom:g}": contextual_negated_reference(allowed, bottom),
        "random token": random_token(V, seed),
        "random well-formed token": random_token(V, seed, allowed),
    }
