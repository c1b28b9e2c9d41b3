"""How unlikely are a predictor's tokens, according to a reference model?

At every context position a predictor names one token; the reference model says how unlikely it is:
- normalized rank: tokens the reference prefers strictly / (V - 1): 0 its favourite, 1 its least likely;
- hit@k: the token is among the reference's k least likely (strictly fewer than k tokens below it);
- surprisal -log p_ref(token) against the most achievable, -log p_ref(argmin) ("surprisal_ratio");
- diversity: distinct predictions, and the share of the most frequent one (a collapse onto a single
  junk token scores rank ~1 everywhere, so rank alone cannot catch it);
- well-formed rate (see ``lmforge.decoding.well_formed_mask``).

A predictor is ``fn(batch, ref_logits) -> LongTensor (B, T)``: one token per position, where position
t has seen tokens 0..t.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F

from ..decoding import fit_mask, well_formed_mask

Predictor = Callable[[dict, torch.Tensor], torch.Tensor]
HIT_KS = (1, 10)


def position_stats(ref_logits: torch.Tensor, preds: torch.Tensor,
                   allowed: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
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


def _cat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def batch_stats(model, reference_fn, batch: dict, allowed: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """``position_stats`` of the model's argmax at every context whose next token has a label."""
    ref = reference_fn(batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    keep = batch["labels"][:, 1:] != -100  # position t is scored when token t+1 is a target
    return position_stats(ref[:, :-1][keep], logits[:, :-1].argmax(-1)[keep], allowed)


@torch.no_grad()
def unlikeliness_metrics(model, reference_fn, batch: dict, allowed: Optional[torch.Tensor] = None,
                         ks: Iterable[int] = HIT_KS) -> dict[str, float]:
    """For the training loop's evaluation block: the model's argmax measured against ``reference_fn(batch)``."""
    return summarize(batch_stats(model, reference_fn, batch, allowed), ks)


def unlikeliness_evaluator(reference_fn, data, allowed: Optional[torch.Tensor] = None, max_batches: int = 4,
                           prefix: str = "unlikely/") -> Callable[[object, int], dict[str, float]]:
    """An evaluator for the loop, ``fn(model, step) -> dict``, over ``data.val_batches(max_batches)``."""
    @torch.no_grad()
    def evaluate(model, step):
        was_training, device = model.training, next(model.parameters()).device
        model.eval()
        parts = []
        for b in data.val_batches(max_batches):
            b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
            parts.append(batch_stats(model, reference_fn, b, allowed))
        model.train(was_training)
        if not parts:
            return {}
        return {prefix + k: v for k, v in summarize(_cat(parts)).items()}
    return evaluate


# ---------------------------------------------------------------------------------------------
# Predictors and the comparison table
# ---------------------------------------------------------------------------------------------


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
        z = ref_logits.float()
        if allowed is not None:
            z = z.masked_fill(~fit_mask(allowed, z.size(-1)).to(z.device), float("inf"))
        return z.argmin(-1)
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
def unlikeliness_table(reference_model, candidates: dict[str, Predictor], tokenizer, texts: Iterable[str],
                       context: int, batch_size: int = 8, max_windows: Optional[int] = None) -> list[dict]:
    """One row per candidate (name first), measured at every position of held-out windows."""
    reference_model.eval()
    windows = context_windows(tokenizer, texts, context, max_windows)
    device = next(reference_model.parameters()).device
    V = reference_model.get_output_embeddings().weight.size(0)
    allowed = well_formed_mask(tokenizer, V)
    parts: dict[str, list] = {name: [] for name in candidates}
    for i in range(0, len(windows), batch_size):
        ids = windows[i: i + batch_size].to(device)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        ref = reference_model(**batch).logits  # (B, T, V)
        for name, predict in candidates.items():
            preds = predict(batch, ref)
            parts[name].append(position_stats(ref.reshape(-1, V), preds.reshape(-1), allowed))
    return [{"name": name, **summarize(_cat(p))} for name, p in parts.items()]


COLUMNS = ("median_rank", "mean_rank", "hit@1", "hit@10", "surprisal_ratio", "distinct", "top_share", "well_formed")


def format_table(rows: list[dict], columns: Iterable[str] = COLUMNS) -> str:
    """A Markdown table of ``unlikeliness_table`` rows."""
    columns = list(columns)
    lines = ["| predictor | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for r in rows:
        cells = [f"{int(r[c])}" if c == "distinct" else f"{r[c]:.3f}" for c in columns]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
