"""One self-contained HTML report (and its PNGs) of what the model thinks: surprisal/entropy heat map with
alternatives on hover, logit lens, attention maps, attribution (``lmforge inspect MODEL --text "..."``)."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

from lmforge.core.errors import LmforgeError
from lmforge.core.pages import environment
from lmforge.doctor import check, raise_on_errors
from lmforge.inspect.figures import MAX_HEADS_SHOWN, MAX_LAYERS_SHOWN, all_pngs, colour, legend, shown, visible
from lmforge.inspect.views import Inspection, bits, encode, inspect_ids
from lmforge.model import load_model_and_tokenizer


def inspect_text(
    model_name: str,
    text: str,
    out: str | Path = "inspect",
    *,
    top_k: int = 5,
    target_position: int = -1,
    add_bos: bool = True,
    max_tokens: int = 256,
    trust_remote_code: bool = False,
    device: str = "auto",
) -> tuple[Path, Inspection]:
    """Loads the model, checks the text fits, computes every view and writes the report; returns its path."""
    model, tokenizer = load_model_and_tokenizer(model_name, trust_remote_code=trust_remote_code, device=device)
    ids = encode(tokenizer, text, add_bos=add_bos)
    if ids.numel() < 2:
        raise LmforgeError("--text: need at least 2 tokens (BOS included) to show a prediction")
    if ids.numel() > max_tokens:
        raise LmforgeError(f"--text has {ids.numel()} tokens, more than --max-tokens={max_tokens}: shorten it")
    if not -ids.numel() <= target_position < ids.numel():
        raise LmforgeError(f"--target-position={target_position} is outside the text's {ids.numel()} tokens")
    if top_k < 1:
        raise LmforgeError(f"--top-k={top_k}: must be at least 1")
    # the doctor's checks that would make the views meaningless or crash (text past the context, ids past the embedding)
    raise_on_errors(check(model, tokenizer, prompts=[text], only=["context", "vocab_size", "special_tokens"]))
    insp = inspect_ids(model, tokenizer, ids, k=top_k, target_position=target_position)
    return write_report(insp, tokenizer, Path(out), model_name=str(model_name)), insp


# ---- what the page shows, as plain data (the template escapes every string) ------------------------------


def _tip(insp: Inspection, tokenizer, row: int, token_id: int | None) -> dict:
    """The hover box for the distribution of row ``row`` (the prediction after token ``row``); ``token_id``
    is the token that came next, None after the last one."""
    came = None
    if token_id is not None:
        s = float(insp.surprisal[row])
        came = {
            "token": visible(insp.tokens[row + 1]),
            "p": math.exp(-s),
            "surprisal": s,
            "bits": float(bits(insp.surprisal[row])),
        }
    alternatives = [
        {"token": visible(tokenizer.decode([int(i)])), "p": float(p), "chosen": int(i) == token_id}
        for p, i in zip(insp.top_probs[row], insp.top_ids[row])
    ]
    return {
        "after": visible(insp.tokens[row]),
        "entropy": float(insp.entropy[row]),
        "came": came,
        "alternatives": alternatives,
        "least": {"token": visible(tokenizer.decode([int(insp.least_ids[row])])), "p": float(insp.least_probs[row])},
    }


def _text(token: str) -> str:
    """A token as it reads in running text: newlines shown and kept."""
    return token.replace("\n", "\u21b5\n")


def heatmap(insp: Inspection, tokenizer, vmax: float) -> dict:
    """Tokens coloured by surprisal, each with its hover box; the first has no prediction (``tip`` None);
    ``next`` is the guess after the text, shown in a dashed box."""
    tokens = [{"text": _text(insp.tokens[0]), "bg": None, "fg": None, "tip": None}]
    for t in range(1, len(insp.tokens)):
        bg, fg = colour("YlOrRd", float(insp.surprisal[t - 1]) / vmax)
        tokens.append(
            {"text": _text(insp.tokens[t]), "bg": bg, "fg": fg, "tip": _tip(insp, tokenizer, t - 1, insp.ids[t])}
        )
    guess = {
        "text": visible(tokenizer.decode([int(insp.top_ids[-1, 0])])),
        "tip": _tip(insp, tokenizer, len(insp.tokens) - 1, None),
    }
    return {"tokens": tokens, "next": guess}


def lens_table(insp: Inspection, tokenizer) -> dict:
    """Layers (last on top) by positions; each cell the top token, shaded by its probability; ``hit`` when it
    is the actual next token."""
    rows = []
    for layer in reversed(range(insp.lens_ids.shape[0])):
        cells = []
        for t in range(len(insp.tokens)):
            p, i = float(insp.lens_probs[layer, t]), int(insp.lens_ids[layer, t])
            bg, fg = colour("Blues", p**0.5)  # sqrt: small probabilities stay visible
            cells.append(
                {
                    "token": visible(tokenizer.decode([i])),
                    "p": p,
                    "bg": bg,
                    "fg": fg,
                    "hit": t + 1 < len(insp.ids) and i == insp.ids[t + 1],
                }
            )
        rows.append({"name": "embeddings" if layer == 0 else f"layer {layer}", "cells": cells})
    return {"header": [visible(t) for t in insp.tokens], "rows": rows}


def attribution(insp: Inspection) -> list[dict]:
    """Input tokens coloured by their signed attribution score; ``target`` marks the position explained."""
    scale = float(insp.attribution.abs().max()) or 1.0
    out = []
    for t, tok in enumerate(insp.tokens):
        a = float(insp.attribution[t])
        # signed square root: the target's own token often dominates; this keeps the others visible
        bg, fg = colour("RdBu_r", 0.5 + 0.5 * math.copysign(math.sqrt(abs(a) / scale), a))
        out.append({"text": _text(tok), "score": a, "bg": bg, "fg": fg, "target": t == insp.target_position})
    return out


# ---- the report -----------------------------------------------------------------------------------------


def _environment():
    return environment("lmforge.inspect")


def render_page(**context) -> str:
    """``templates/inspect.html`` filled with plain data (see ``page_context``)."""
    return _environment().get_template("inspect.html").render(**context)


def page_context(insp: Inspection, tokenizer, pngs: dict[str, bytes], model_name: str = "model") -> dict:
    """Everything the page shows: numbers, strings, colours and the PNGs as base64; no HTML."""
    L, H = insp.attentions.shape[:2]
    # colour scale to the 95th percentile: one huge surprisal (often the first word) would wash out the rest
    vmax = max(float(insp.surprisal.quantile(0.95)), 1e-6)
    note = (
        ""
        if (L <= MAX_LAYERS_SHOWN and H <= MAX_HEADS_SHOWN)
        else (
            f"Showing layers {[i + 1 for i in shown(L, MAX_LAYERS_SHOWN)]} "
            f"and heads {[i + 1 for i in shown(H, MAX_HEADS_SHOWN)]}."
        )
    )
    return {
        "model": model_name,
        "n_tokens": len(insp.tokens),
        "n_layers": L,
        "n_heads": H,
        "vocab": len(tokenizer),
        "mean_surprisal": float(insp.surprisal.mean()),
        "mean_bits": float(bits(insp.surprisal).mean()),
        "max_surprisal": vmax,
        "k": insp.top_ids.shape[1],
        "legend": legend("YlOrRd"),
        "heatmap": heatmap(insp, tokenizer, vmax),
        "lens": lens_table(insp, tokenizer),
        "attention_note": note,
        "attribution": attribution(insp),
        "target_position": insp.target_position,
        "target_token": visible(tokenizer.decode([insp.target_id])),
        "png": {k: base64.b64encode(v).decode("ascii") for k, v in pngs.items()},
    }


def write_report(insp: Inspection, tokenizer, out_dir: Path, model_name: str = "model") -> Path:
    """Writes ``report.html`` (PNGs embedded, so it stands alone), the same PNGs beside it, and the numbers as JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = all_pngs(insp, tokenizer)
    for name, data in pngs.items():
        (out_dir / f"{'logit_lens' if name == 'lens' else name}.png").write_bytes(data)
    report = out_dir / "report.html"
    report.write_text(render_page(**page_context(insp, tokenizer, pngs, model_name)), encoding="utf-8")
    (out_dir / "inspection.json").write_text(json.dumps(numbers(insp, tokenizer)), encoding="utf-8")
    return report


def numbers(insp: Inspection, tokenizer) -> dict:
    """The report's figures as plain JSON, for scripts."""
    dec = lambda ids: [tokenizer.decode([int(i)]) for i in ids]  # noqa: E731
    return {
        "tokens": insp.tokens,
        "ids": insp.ids,
        "surprisal_nats": insp.surprisal.tolist(),
        "entropy_nats": insp.entropy.tolist(),
        "top_k": [dec(r) for r in insp.top_ids],
        "top_k_probs": insp.top_probs.tolist(),
        "least_likely": dec(insp.least_ids),
        "least_likely_probs": insp.least_probs.tolist(),
        "logit_lens": [dec(r) for r in insp.lens_ids],
        "logit_lens_probs": insp.lens_probs.tolist(),
        "attribution": insp.attribution.tolist(),
        "target_position": insp.target_position,
        "target": tokenizer.decode([insp.target_id]),
    }
