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


def contextual_negated_reference(allowed: Optional[torch.Tensor] = None, bottom: float = 0.02) -> Predictor:
    """No training either: among the reference's bottom tokens, the most unusually unlikely in this context
    (``lmforge.train.least_likely.contextual_argmin_targets``, token means over the batch)."""
    from ..train.least_likely import contextual_argmin_targets

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


# ---------------------------------------------------------------------------------------------
# Command line: python -m lmforge.evaluate.unlikeliness --reference BASE --model TRAINED --text FILE
# ---------------------------------------------------------------------------------------------


def baselines(tokenizer, V: int, bottom: float = 0.02, seed: int = 0) -> dict[str, Predictor]:
    """The untrained comparisons: the reference's favourite, its negation (with and without the
    well-formed mask), the contextual negation, and random tokens."""
    allowed = well_formed_mask(tokenizer, V)
    return {"reference argmax": reference_argmax(), "negated logits": negated_reference(),
            "negated logits, well-formed": negated_reference(allowed),
            f"contextual negated, well-formed, bottom {bottom:g}": contextual_negated_reference(allowed, bottom),
            "random token": random_token(V, seed), "random well-formed token": random_token(V, seed, allowed)}


def add_arguments(p) -> None:
    p.add_argument("--reference", required=True, help="the reference model: folder, run or hub id")
    p.add_argument("--model", action="append", default=[], help="a trained model to compare (repeatable)")
    p.add_argument("--text", required=True, help="a text file; its last --held-out fraction of characters is used")
    p.add_argument("--held-out", type=float, default=0.1, help="fraction of the file's end to measure on")
    p.add_argument("--context", type=int, default=64, help="tokens per window")
    p.add_argument("--max-windows", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bottom", type=float, default=0.02, help="the contextual baseline's bottom fraction")


def run(args) -> int:
    from pathlib import Path

    from ..errors import LmforgeError
    from ..model import load_pretrained
    from ..tokenizer import load_tokenizer

    path = Path(args.text)
    if not path.is_file():
        raise LmforgeError(f"--text: no such file: {path}")
    text = path.read_text(encoding="utf-8")
    held_out = text[int(len(text) * (1 - args.held_out)):]
    reference = load_pretrained(args.reference).eval()
    tokenizer = load_tokenizer(args.reference)
    V = reference.get_output_embeddings().weight.size(0)
    allowed = well_formed_mask(tokenizer, V)
    cands = baselines(tokenizer, V, args.bottom, args.seed)
    for m in args.model:
        cands[f"trained: {m}"] = model_argmax(load_pretrained(m).eval())
    rows = unlikeliness_table(reference, cands, tokenizer, [held_out], args.context, max_windows=args.max_windows)
    print(f"{int(rows[0]['positions'])} positions of {path.name} (last {args.held_out:.0%}), context {args.context}, V={V}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m lmforge.evaluate.unlikeliness", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
