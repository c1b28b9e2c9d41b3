"""How unlikely are a predictor's tokens, according to a reference model?

At every context position a predictor names one token; the reference model says how unlikely it is:
- normalized rank: tokens the reference prefers strictly / (V - 1): 0 its favourite, 1 its least likely;
- hit@k: the token is among the reference's k least likely (strictly fewer than k tokens below it);
- surprisal -log p_ref(token) against the most achievable, -log p_ref(argmin) ("surprisal_ratio");
- diversity: distinct predictions, and the share of the most frequent one (a collapse onto a single
  junk token scores rank ~1 everywhere, so rank alone cannot catch it);
- well-formed rate (see ``lmforge.model.vocab.well_formed_mask``).

The comparison table of predictors is ``lmforge.evaluate.unlikeliness``; these measures also run in the
training loop's evaluation block (``unlikeliness_evaluator``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Optional

import torch
import torch.nn.functional as F

from lmforge.losses.common import IGNORE
from lmforge.model.modes import evaluating
from lmforge.model.vocab import fit_mask

HIT_KS = (1, 10)


def position_stats(
    ref_logits: torch.Tensor, preds: torch.Tensor, allowed: Optional[torch.Tensor] = None
) -> dict[str, torch.Tensor]:
    """Per-position measures for ref_logits (N, V) and predicted ids (N,); each value is (N,)."""
    z = ref_logits.float()
    zp = z.gather(-1, preds.unsqueeze(-1))  # (N, 1) the predicted token's reference logit
    V = z.size(-1)
    logp = F.log_softmax(z, dim=-1)
    out = {
        "rank": (z > zp).sum(-1).float() / (V - 1),
        "below": (z < zp).sum(-1),  # tokens the reference likes even less
        "surprisal": -logp.gather(-1, preds.unsqueeze(-1)).squeeze(-1),
        "max_surprisal": -logp.min(-1).values,
        "pred": preds,
    }
    if allowed is not None:
        out["well_formed"] = fit_mask(allowed, V).to(preds.device)[preds].float()
    return out


def summarize(stats: dict[str, torch.Tensor], ks: Iterable[int] = HIT_KS) -> dict[str, float]:
    """Corpus-level figures from concatenated ``position_stats``."""
    n = stats["pred"].numel()
    counts = torch.bincount(stats["pred"])
    out = {
        "positions": float(n),
        "median_rank": stats["rank"].median().item(),
        "mean_rank": stats["rank"].mean().item(),
        **{f"hit@{k}": (stats["below"] < k).float().mean().item() for k in ks},
        "surprisal": stats["surprisal"].mean().item(),
        "max_surprisal": stats["max_surprisal"].mean().item(),
        "distinct": float((counts > 0).sum().item()),
        "top_share": counts.max().item() / n,
    }
    out["surprisal_ratio"] = out["surprisal"] / out["max_surprisal"]
    if "well_formed" in stats:
        out["well_formed"] = stats["well_formed"].mean().item()
    return out


def concat_stats(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def batch_stats(model, reference_fn, batch: dict, allowed: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """``position_stats`` of the model's argmax at every context whose next token has a label."""
    ref = reference_fn(batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    keep = batch["labels"][:, 1:] != IGNORE  # position t is scored when token t+1 is a target
    return position_stats(ref[:, :-1][keep], logits[:, :-1].argmax(-1)[keep], allowed)


@torch.no_grad()
def unlikeliness_metrics(
    model, reference_fn, batch: dict, allowed: Optional[torch.Tensor] = None, ks: Iterable[int] = HIT_KS
) -> dict[str, float]:
    """For the training loop's evaluation block: the model's argmax measured against ``reference_fn(batch)``."""
    return summarize(batch_stats(model, reference_fn, batch, allowed), ks)


def unlikeliness_evaluator(
    reference_fn, data, allowed: Optional[torch.Tensor] = None, max_batches: int = 4, prefix: str = "unlikely/"
) -> Callable[[object, int], dict[str, float]]:
    """An evaluator for the loop, ``fn(model, step) -> dict``, over ``data.val_batches(max_batches)``."""

    @torch.no_grad()
    def evaluate(model, step):
        device = next(model.parameters()).device
        parts = []
        with evaluating(model):
            for b in data.val_batches(max_batches):
                b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
                parts.append(batch_stats(model, reference_fn, b, allowed))
        if not parts:
            return {}
        return {prefix + k: v for k, v in summarize(concat_stats(parts)).items()}

    return evaluate
