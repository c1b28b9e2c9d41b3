"""``lmforge data preview``: the training examples exactly as training builds them, trained tokens told
apart from context, with what the context cuts and how much of a batch is real tokens.

``preview_data`` loads the config's tokenizer (``model.base``, else ``tokenizer.path``), gets it ready for
chat data as fine-tuning does (``ensure_pad``, ``chat.prepare_tokenizer``) and calls ``load_examples``;
``render_text`` and ``render_html`` show the result. ``first_fit_blocks`` is the packing estimate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lmforge.core.config import RunConfig
from lmforge.core.errors import LmforgeError
from lmforge.core.pages import environment
from lmforge.data.batches import ExampleBatches, Layout
from lmforge.data.chat import prepare_tokenizer, template_choice, uses_chat
from lmforge.data.examples import load_examples, source_examples, special_ids
from lmforge.losses.common import IGNORE
from lmforge.model import load_tokenizer, resolve_model_path
from lmforge.model.tokenizer import ensure_pad

GREEN, DIM, RESET = "\033[32m", "\033[2m", "\033[0m"
OPEN, CLOSE = "[[", "]]"


@dataclass
class Preview:
    """What ``lmforge data preview`` shows, as plain data."""

    source: str
    format: str
    chat_template: Optional[str]
    assistant_turns: str
    context: int
    examples: list[dict]  # {"tokens", "trained", "length", "segments": [(text, trained)]}
    n_train: int
    n_val: int
    train_tokens: int
    trained_tokens: int
    longest: int
    cut_train: int
    cut_val: int
    batch_size: int
    group_by_length: bool
    padded_fill: float
    packed_blocks: int
    packed_fill: float
    notes: list[str] = field(default_factory=list)


def first_fit_blocks(lengths: list[int], block: int) -> int:
    """Blocks of ``block`` tokens that first-fit decreasing packing fills with sequences of ``lengths``
    (longest first, each into the first block with room); a sequence longer than a block is an error."""
    if block < 1:
        raise ValueError(f"block={block}: must be at least 1")
    items = sorted((n for n in lengths if n > 0), reverse=True)
    if items and items[0] > block:
        raise ValueError(f"a sequence of {items[0]} tokens does not fit a block of {block}")
    size = 1
    while size < len(items):
        size *= 2
    room = [block] * (2 * size)  # a max-tree over the blocks' free room: the leftmost block with room in log time
    used = 0
    for n in items:
        i = 1
        while i < size:
            i = 2 * i if room[2 * i] >= n else 2 * i + 1
        room[i] -= n
        used = max(used, i - size + 1)
        i //= 2
        while i:
            room[i] = max(room[2 * i], room[2 * i + 1])
            i //= 2
    return used


def padded_fill(
    train: list[dict], batch_size: int, grad_accum: int, seed: int, pad_id: int, group_by_length: bool
) -> float:
    """Real tokens / tokens of the padded micro-batches, over one epoch of the batches training draws."""
    batches = ExampleBatches(train, [], Layout(batch_size, grad_accum), seed, pad_id, group_by_length)
    real = total = 0
    for step in range(max(1, len(train) // batches.layout.global_rows)):
        for b in batches.train_step(step):
            real += int(b["attention_mask"].sum())
            total += b["attention_mask"].numel()
    return real / max(total, 1)


def segments(example: dict, tokenizer) -> list[tuple[str, bool]]:
    """The example's text in runs of trained (label set) and masked tokens, each run decoded whole."""
    ids, labels = example["input_ids"], example["labels"]
    out, start = [], 0
    for j in range(1, len(ids) + 1):
        if j == len(ids) or (labels[j] != IGNORE) != (labels[start] != IGNORE):
            out.append((tokenizer.decode(ids[start:j]), labels[start] != IGNORE))
            start = j
    return out


def full_length(example: dict, tokenizer) -> int:
    """The example's length before the context cut it (chat examples carry it; pairs are re-counted)."""
    if "length" in example:
        return example["length"]
    bos, _ = special_ids(tokenizer)
    enc = [
        tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"] if t else []
        for t in (example["prompt"], example["completion"])
    ]
    return len(bos) + len(enc[0]) + len(enc[1]) + 1


def model_context(cfg: RunConfig) -> int:
    """The context fine-tuning uses: ``model.context``, else the base's positions up to 1024."""
    if cfg.model.context:
        return cfg.model.context
    if not cfg.model.base:
        return 1024
    from transformers import AutoConfig

    try:
        conf = AutoConfig.from_pretrained(
            resolve_model_path(cfg.model.base), trust_remote_code=cfg.model.trust_remote_code
        )
    except Exception:  # a model without a readable config: the loader's own default
        return 1024
    return min(getattr(conf, "max_position_embeddings", 1024) or 1024, 1024)


def preview_data(cfg: RunConfig, rows: int = 3) -> Preview:
    """The first ``rows`` examples of the first training source and the numbers of the whole training data."""
    name = cfg.model.base or cfg.tokenizer.path
    if not name:
        raise LmforgeError("data preview needs a tokenizer: set model.base (or tokenizer.path)")
    if not cfg.data.train:
        raise LmforgeError("data.train is empty: name at least one source (a file, folder or hub dataset)")
    if cfg.train.batch_size == "auto":  # the padding depends on the micro-batch, which a memory probe decides
        raise LmforgeError(
            "train.batch_size=auto: decide it first (lmforge data preview does, as training does) or give a number"
        )
    tokenizer = load_tokenizer(name, trust_remote_code=cfg.model.trust_remote_code)
    grew = ensure_pad(tokenizer)
    grew = prepare_tokenizer(tokenizer, cfg.data) or grew
    context = model_context(cfg)
    notes = []
    if grew:
        notes.append(
            f"the tokenizer grows to {len(tokenizer)} tokens (PAD or chat markers added); "
            "the model's embeddings grow with it"
        )
    data = cfg.data
    if data.format == "text" and all(s.format in (None, "text") for s in data.train):
        notes.append(f"text data: fine-tuning packs it into blocks of {context} tokens; shown here row by row")
    if getattr(data, "packing", False):
        notes.append(
            f"data.packing is on: training lays examples end to end in rows of {context} tokens "
            "(best-fit), so the padding above is what it avoids"
        )
    train, val = load_examples(data, tokenizer, context, cfg.seed)
    quiet = logging.getLogger("lmforge.data.examples")
    level, _ = quiet.level, quiet.setLevel(logging.ERROR)  # its warnings were said once already
    try:
        shown = source_examples(data.train[0], data, tokenizer, context)[: max(rows, 0)]
    finally:
        quiet.setLevel(level)
    examples = [
        {
            "tokens": len(ex["input_ids"]),
            "trained": sum(t != IGNORE for t in ex["labels"]),
            "length": full_length(ex, tokenizer),
            "segments": segments(ex, tokenizer),
        }
        for ex in shown
    ]
    lengths = [len(ex["input_ids"]) for ex in train]
    blocks = first_fit_blocks(lengths, context)
    chat = uses_chat(data)
    return Preview(
        source=data.train[0].path,
        format=data.train[0].format or data.format,
        chat_template=(template_choice(data) or "tokenizer") if chat else None,
        assistant_turns=data.assistant_turns,
        context=context,
        examples=examples,
        n_train=len(train),
        n_val=len(val),
        train_tokens=sum(lengths),
        trained_tokens=sum(sum(t != IGNORE for t in ex["labels"]) for ex in train),
        longest=max(lengths, default=0),
        cut_train=sum(full_length(ex, tokenizer) > context for ex in train),
        cut_val=sum(full_length(ex, tokenizer) > context for ex in val),
        batch_size=cfg.train.batch_size,
        group_by_length=data.group_by_length,
        padded_fill=padded_fill(
            train, cfg.train.batch_size, cfg.train.grad_accum, cfg.seed, tokenizer.pad_token_id, data.group_by_length
        )
        if train
        else 0.0,
        packed_blocks=blocks,
        packed_fill=sum(lengths) / max(blocks * context, 1),
        notes=notes,
    )


def render_text(p: Preview, colour: bool = False) -> str:
    """The preview for a terminal: trained tokens green (``colour``) or in ``[[...]]``, context dimmed or plain."""
    chat = f", chat template {p.chat_template}, assistant turns: {p.assistant_turns}" if p.chat_template else ""
    legend = (
        f"{GREEN}trained tokens in green{RESET}, {DIM}context (no loss) dimmed{RESET}"
        if colour
        else f"trained tokens {OPEN}in double brackets{CLOSE}, context (no loss) plain"
    )
    lines = [f"data preview: {p.source} (format {p.format}{chat}); context {p.context}", legend]
    for i, ex in enumerate(p.examples, 1):
        cut = f", cut from {ex['length']}" if ex["length"] > ex["tokens"] else ""
        lines += ["", f"--- example {i}: {ex['tokens']} tokens{cut}, {ex['trained']} trained"]
        body = "".join(
            (f"{GREEN}{t}{RESET}" if colour else f"{OPEN}{t}{CLOSE}")
            if trained
            else (f"{DIM}{t}{RESET}" if colour else t)
            for t, trained in ex["segments"]
        )
        lines.append(body)
    lines += ["", *summary(p)]
    return "\n".join(lines)


def summary(p: Preview) -> list[str]:
    grouped = "grouped by length" if p.group_by_length else "in random order"
    share = p.trained_tokens / max(p.train_tokens, 1)
    return [
        f"examples: {p.n_train} train, {p.n_val} validation; {p.train_tokens} train tokens, {p.trained_tokens} "
        f"trained ({share:.1%}); longest {p.longest}",
        f"context {p.context} cuts {p.cut_train} of {p.n_train} train and {p.cut_val} of {p.n_val} validation examples",
        f"padding: batches of {p.batch_size} ({grouped}) are {p.padded_fill:.1%} real tokens",
        f"packing: first-fit into blocks of {p.context} would fill {p.packed_fill:.1%} "
        f"({p.packed_blocks} block{'' if p.packed_blocks == 1 else 's'})",
        *[f"note: {n}" for n in p.notes],
    ]


def _environment():
    return environment("lmforge.data")


def render_html(p: Preview) -> str:
    """A self-contained page (``templates/preview.html``): the same examples and numbers."""
    return _environment().get_template("preview.html").render(p=p, summary=summary(p))


def write_html(p: Preview, path: str | Path) -> Path:
    out = Path(path)
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(p), encoding="utf-8")
    return out
