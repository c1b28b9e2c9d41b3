"""Colours, token labels and the report's PNGs (matplotlib's object API: no global pyplot state)."""

from __future__ import annotations

import io

from lmforge.inspect.views import Inspection

MAX_LAYERS_SHOWN, MAX_HEADS_SHOWN = 12, 16  # attention grid cap: a 32x32 grid of maps is unreadable


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


def shown(n: int, cap: int) -> list[int]:
    """Up to ``cap`` indices spread evenly over range(n), first and last included."""
    if n <= cap:
        return list(range(n))
    return sorted({round(i * (n - 1) / (cap - 1)) for i in range(cap)})


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
                ax.text(
                    t,
                    layer,
                    visible(tokenizer.decode([int(insp.lens_ids[layer, t])])),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if p > 0.55 else "black",
                )
    _ticks(ax, insp.tokens)
    ax.set_yticks(range(L), ["emb"] + [str(i) for i in range(1, L)], fontsize=8)
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, label="top-1 probability", fraction=0.03)
    return png(fig)


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


def all_pngs(insp: Inspection, tokenizer) -> dict[str, bytes]:
    """The four figures by name (``lens`` is written as ``logit_lens.png``)."""
    return {
        "surprisal": surprisal_png(insp),
        "lens": lens_png(insp, tokenizer),
        "attention": attention_png(insp),
        "attribution": attribution_png(insp, tokenizer),
    }
