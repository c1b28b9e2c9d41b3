"""One self-contained HTML report (and its PNGs) of what the model thinks: surprisal/entropy heat map with
alternatives on hover, logit lens, attention maps, attribution (``lmforge inspect MODEL --text "..."``)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from string import Template

from lmforge.doctor import check, raise_on_errors
from lmforge.model import load_model_and_tokenizer
from lmforge.core.errors import LmforgeError
from lmforge.inspect.views import Inspection, bits, encode, inspect_ids

TEMPLATE = Path(__file__).parent / "templates" / "inspect.html"
MAX_LAYERS_SHOWN, MAX_HEADS_SHOWN = 12, 16  # attention grid cap: a 32x32 grid of maps is unreadable


def inspect_text(model_name: str, text: str, out: str | Path = "inspect", *, top_k: int = 5,
                 target_position: int = -1, add_bos: bool = True, max_tokens: int = 256,
                 trust_remote_code: bool = False) -> tuple[Path, Inspection]:
    """Loads the model, checks the text fits, computes every view and writes the report; returns its path."""
    model, tokenizer = load_model_and_tokenizer(model_name, trust_remote_code=trust_remote_code)
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


# ---- small formatting helpers ---------------------------------------------------------------------------

def visible(token: str) -> str:
    """A token as a label: spaces and newlines made visible."""
    return token.replace(" ", "\u00b7").replace("\n", "\u21b5").replace("\t", "\u21e5") or "\u2205"


def colour(cmap_name: str, x: float) -> tuple[str, str]:
    """Background and readable text colour for ``x`` in [0, 1] on a matplotlib colour map."""
    from matplotlib import colormaps

    r, g, b, _ = colormaps[cmap_name](min(max(x, 0.0), 1.0))
    fg = "#fff" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "#111"
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}", fg


def legend(cmap_name: str, n: int = 6) -> str:
    return ", ".join(colour(cmap_name, i / (n - 1))[0] for i in range(n))


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


# ---- HTML pieces ----------------------------------------------------------------------------------------

def _tip(insp: Inspection, tokenizer, row: int, token_id: int | None) -> str:
    """The hover box for the distribution of row ``row`` (the prediction after token ``row``)."""
    e = float(insp.entropy[row])
    lines = [f"prediction after <code>{html.escape(visible(insp.tokens[row]))}</code>: entropy {e:.2f} nats"]
    if token_id is not None:
        s = float(insp.surprisal[row])
        lines.append(f"<b><code>{html.escape(visible(insp.tokens[row + 1]))}</code></b> came: p = {math.exp(-s):.4f}, "
                     f"surprisal {s:.2f} nats ({float(bits(insp.surprisal[row])):.2f} bits)")
    cells = "".join(
        f"<tr><td>{'&#9654;' if int(i) == token_id else ''}<code>{html.escape(visible(tokenizer.decode([int(i)])))}"
        f"</code></td><td class='p'>{float(p):.4f}</td></tr>"
        for p, i in zip(insp.top_probs[row], insp.top_ids[row]))
    least = tokenizer.decode([int(insp.least_ids[row])])
    cells += (f"<tr><td>least likely <code>{html.escape(visible(least))}</code></td>"
              f"<td class='p'>{float(insp.least_probs[row]):.2e}</td></tr>")
    return "<br>".join(lines) + f"<table>{cells}</table>"


def heatmap_html(insp: Inspection, tokenizer, vmax: float) -> str:
    """Tokens coloured by surprisal; the first has no prediction; a dashed box shows the next-token guess."""
    out = []
    for t, tok in enumerate(insp.tokens):
        text = html.escape(tok.replace("\n", "\u21b5\n"))
        if t == 0:
            out.append(f"<span class='tok first' title='no prediction for the first token'>{text}</span>")
            continue
        bg, fg = colour("YlOrRd", float(insp.surprisal[t - 1]) / vmax)
        tip = _tip(insp, tokenizer, t - 1, insp.ids[t])
        out.append(f"<span class='tok' style='background:{bg};color:{fg}'>{text}<span class='tip'>{tip}</span></span>")
    tip = _tip(insp, tokenizer, len(insp.tokens) - 1, None)
    guess = html.escape(visible(tokenizer.decode([int(insp.top_ids[-1, 0])])))
    out.append(f"<span class='tok next'>{guess}?<span class='tip'>{tip}</span></span>")
    return "".join(out)


def lens_table_html(insp: Inspection, tokenizer) -> str:
    """Layers (last on top) by positions; each cell the top token, shaded by its probability."""
    head = "".join(f"<th>{html.escape(visible(t))}</th>" for t in insp.tokens)
    rows = []
    L = insp.lens_ids.shape[0]
    for layer in reversed(range(L)):
        cells = []
        for t in range(len(insp.tokens)):
            p, i = float(insp.lens_probs[layer, t]), int(insp.lens_ids[layer, t])
            bg, fg = colour("Blues", p ** 0.5)  # sqrt: small probabilities stay visible
            hit = " class='hit'" if t + 1 < len(insp.ids) and i == insp.ids[t + 1] else ""
            cells.append(f"<td{hit} style='background:{bg};color:{fg}' title='p = {p:.4f}'>"
                         f"{html.escape(visible(tokenizer.decode([i])))}</td>")
        name = "embeddings" if layer == 0 else f"layer {layer}"
        rows.append(f"<tr><th>{name}</th>{''.join(cells)}</tr>")
    return f"<table class='lens'><tr><th>input &rarr;</th>{head}</tr>{''.join(rows)}</table>"


def attribution_html(insp: Inspection) -> str:
    scale = float(insp.attribution.abs().max()) or 1.0
    out = []
    for t, tok in enumerate(insp.tokens):
        a = float(insp.attribution[t])
        # signed square root: the target's own token often dominates; this keeps the others visible
        bg, fg = colour("RdBu_r", 0.5 + 0.5 * math.copysign(math.sqrt(abs(a) / scale), a))
        cls = "tok target" if t == insp.target_position else "tok"
        out.append(f"<span class='{cls}' style='background:{bg};color:{fg}' title='{a:+.4f}'>"
                   f"{html.escape(tok.replace(chr(10), chr(0x21b5) + chr(10)))}</span>")
    return "".join(out)


# ---- PNGs (matplotlib's object API: no global pyplot state) ----------------------------------------------

def _ticks(ax, labels: list[str], axis: str = "x") -> None:
    pos = range(len(labels))
    if axis == "x":
        ax.set_xticks(pos, [visible(t) for t in labels], rotation=90, fontsize=8)
    else:
        ax.set_yticks(pos, [visible(t) for t in labels], fontsize=8)


def surprisal_png(insp: Inspection) -> bytes:
    from matplotlib.figure import Figure

    T = len(insp.tokens)
    fig = Figure(figsize=(max(6.0, 0.28 * T + 2), 3.2))
    ax = fig.subplots()
    ax.bar(range(1, T), insp.surprisal.numpy(), color="#e3702d", label="surprisal of the token")
    ax.plot(range(1, T), insp.entropy[:-1].numpy(), "k.-", lw=1, label="entropy of its prediction")
    _ticks(ax, insp.tokens)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylabel("nats")
    ax.legend(fontsize=8, loc="upper right")
    return png(fig)


def lens_png(insp: Inspection, tokenizer) -> bytes:
    from matplotlib.figure import Figure

    L, T = insp.lens_probs.shape
    fig = Figure(figsize=(max(6.0, 0.45 * T + 2), 0.4 * L + 1.6))
    ax = fig.subplots()
    im = ax.imshow(insp.lens_probs.numpy(), aspect="auto", origin="lower", cmap="Blues", vmin=0, vmax=1)
    if T <= 64:  # annotate each cell with its top token while they still fit
        for layer in range(L):
            for t in range(T):
                p = float(insp.lens_probs[layer, t])
                ax.text(t, layer, visible(tokenizer.decode([int(insp.lens_ids[layer, t])])), ha="center",
                        va="center", fontsize=7, color="white" if p > 0.55 else "black")
    _ticks(ax, insp.tokens)
    ax.set_yticks(range(L), ["emb"] + [str(i) for i in range(1, L)], fontsize=8)
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, label="top-1 probability", fraction=0.03)
    return png(fig)


def shown(n: int, cap: int) -> list[int]:
    """Up to ``cap`` indices spread evenly over range(n), first and last included."""
    if n <= cap:
        return list(range(n))
    return sorted({round(i * (n - 1) / (cap - 1)) for i in range(cap)})


def attention_png(insp: Inspection) -> bytes:
    from matplotlib.figure import Figure

    layers = shown(insp.attentions.shape[0], MAX_LAYERS_SHOWN)
    heads = shown(insp.attentions.shape[1], MAX_HEADS_SHOWN)
    T = len(insp.tokens)
    side = 2.4 if T <= 24 else 3.2
    fig = Figure(figsize=(side * len(heads) + 0.6, side * len(layers) + 0.4))
    axes = fig.subplots(len(layers), len(heads), squeeze=False)
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r][c]
            ax.imshow(insp.attentions[layer, head].numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"layer {layer + 1} head {head + 1}", fontsize=8)
            if T <= 24:
                _ticks(ax, insp.tokens)
                _ticks(ax, insp.tokens, axis="y")
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.tight_layout()
    return png(fig)


def attribution_png(insp: Inspection, tokenizer) -> bytes:
    from matplotlib.figure import Figure

    T = len(insp.tokens)
    a = insp.attribution.numpy()
    fig = Figure(figsize=(max(6.0, 0.28 * T + 2), 3.0))
    ax = fig.subplots()
    ax.bar(range(T), a, color=["#c0392b" if v > 0 else "#2e6fb5" for v in a])
    ax.axvline(insp.target_position, color="#0a5ad4", ls="--", lw=1)
    _ticks(ax, insp.tokens)
    ax.axhline(0, color="black", lw=0.6)
    target = visible(tokenizer.decode([insp.target_id]))
    ax.set_title(f"input x gradient of log p({target!r}) at position {insp.target_position}", fontsize=9)
    return png(fig)


# ---- the report -----------------------------------------------------------------------------------------

def write_report(insp: Inspection, tokenizer, out_dir: Path, model_name: str = "model") -> Path:
    """Writes ``report.html`` (PNGs embedded, so it stands alone), the same PNGs beside it, and the numbers as JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {"surprisal": surprisal_png(insp), "lens": lens_png(insp, tokenizer), "attention": attention_png(insp),
            "attribution": attribution_png(insp, tokenizer)}
    for name, data in pngs.items():
        (out_dir / f"{'logit_lens' if name == 'lens' else name}.png").write_bytes(data)
    L, H = insp.attentions.shape[:2]
    # colour scale to the 95th percentile: one huge surprisal (often the first word) would wash out the rest
    vmax = max(float(insp.surprisal.quantile(0.95)), 1e-6)
    note = "" if (L <= MAX_LAYERS_SHOWN and H <= MAX_HEADS_SHOWN) else (
        f"Showing layers {[i + 1 for i in shown(L, MAX_LAYERS_SHOWN)]} "
        f"and heads {[i + 1 for i in shown(H, MAX_HEADS_SHOWN)]}.")
    page = Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        model=html.escape(model_name), n_tokens=len(insp.tokens), n_layers=L, n_heads=H, vocab=len(tokenizer),
        mean_surprisal=f"{float(insp.surprisal.mean()):.3f}", mean_bits=f"{float(bits(insp.surprisal).mean()):.3f}",
        max_surprisal=f"{vmax:.2f}", k=insp.top_ids.shape[1], legend=legend("YlOrRd"),
        heatmap=heatmap_html(insp, tokenizer, vmax), lens_table=lens_table_html(insp, tokenizer),
        attention_note=note, attribution=attribution_html(insp), target_position=insp.target_position,
        target_token=html.escape(visible(tokenizer.decode([insp.target_id]))),
        **{f"png_{k}": base64.b64encode(v).decode("ascii") for k, v in pngs.items()},
    )
    report = out_dir / "report.html"
    report.write_text(page, encoding="utf-8")
    (out_dir / "inspection.json").write_text(json.dumps(numbers(insp, tokenizer)), encoding="utf-8")
    return report


def numbers(insp: Inspection, tokenizer) -> dict:
    """The report's figures as plain JSON, for scripts."""
    dec = lambda ids: [tokenizer.decode([int(i)]) for i in ids]  # noqa: E731
    return {
        "tokens": insp.tokens, "ids": insp.ids, "surprisal_nats": insp.surprisal.tolist(),
        "entropy_nats": insp.entropy.tolist(), "top_k": [dec(r) for r in insp.top_ids],
        "top_k_probs": insp.top_probs.tolist(), "least_likely": dec(insp.least_ids),
        "least_likely_probs": insp.least_probs.tolist(), "logit_lens": [dec(r) for r in insp.lens_ids],
        "logit_lens_probs": insp.lens_probs.tolist(), "attribution": insp.attribution.tolist(),
        "target_position": insp.target_position, "target": tokenizer.decode([insp.target_id]),
    }
