"""Fine-tuning examples: rows → (prompt, completion) → token ids with completion-only labels.

An example is ``BOS + prompt + completion + EOS`` (BOS only if the tokenizer has one). EOS ends every
completion and is always a target, so the model learns to stop. Prompt and completion are tokenized
apart, exactly as ``generate`` will tokenize the prompt, so the label mask covers exactly the prompt.
Nothing here sets PAD: ``lmforge.model.tokenizer.ensure_pad`` gives a PAD distinct from EOS.

Conversations (``chat``, ``sharegpt``) are one example per row, tokenized as their chat template writes
them, with a target span per assistant turn (``lmforge.data.chat``): the template's own end-of-turn token
closes each answer and no EOS is added; BOS starts the example once, whether the template writes it or not,
as every generation prompt starts.
"""

from __future__ import annotations

import logging
import random
from typing import Optional

from lmforge.core.config import DataConfig, SourceConfig
from lmforge.core.errors import LmforgeError
from lmforge.data.chat import assistant_spans, chat_template_for, conversation, is_chat
from lmforge.data.formats import render
from lmforge.data.readers import Record, read_records
from lmforge.data.split import split_rows
from lmforge.losses.common import IGNORE

log = logging.getLogger(__name__)


def special_ids(tokenizer) -> tuple[list[int], int]:
    """``([bos] or [], eos)``; fine-tuning without an EOS token would teach a model that never stops."""
    if tokenizer.eos_token_id is None:
        raise LmforgeError("the tokenizer has no EOS token: a fine-tuned model could not learn to stop")
    bos = tokenizer.bos_token_id
    return ([bos] if bos is not None else []), tokenizer.eos_token_id


def encode_prompt(prompt: str, tokenizer) -> list[int]:
    """The ids of a prompt as training saw them (BOS + prompt): use it to generate from a fine-tuned model."""
    bos, _ = special_ids(tokenizer)
    return bos + tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]


def assemble(
    bos: list[int],
    prompt_ids: list[int],
    completion_ids: list[int],
    eos: int,
    max_len: int,
    completion_only: bool = True,
) -> dict:
    """Joins the pieces into ``input_ids`` and ``labels`` (-100 on BOS and, if completion_only, the prompt).

    Too long: the prompt loses tokens from its left (the end of the prompt, next to the answer, is kept)
    and the completion from its right; the prompt keeps at least half the room when it is that long, so
    the answer never loses its question entirely. A cut completion gets no EOS: an EOS after half an
    answer would teach the model to stop mid-answer (half a JSON object, then end).
    """
    room = max_len - len(bos) - 1  # tokens left for prompt + completion after BOS and EOS
    if room < 2:
        raise LmforgeError(f"max_len={max_len} is too short for an example (BOS + prompt + completion + EOS)")
    p, c, end = prompt_ids, completion_ids, [eos]
    if len(p) + len(c) > room:
        keep_c = min(len(c), room - min(len(p), room // 2))
        p = p[len(p) - (room - keep_c) :] if room - keep_c > 0 else []
        if keep_c < len(c):  # the answer is cut: its continuation takes EOS's place
            c, end = c[: keep_c + 1], []
    input_ids = bos + p + c + end
    n_masked = len(bos) + (len(p) if completion_only else 0)
    labels = [IGNORE] * n_masked + input_ids[n_masked:]
    return {"input_ids": input_ids, "labels": labels}


def tokenize_example(prompt: str, completion: str, tokenizer, max_len: int, completion_only: bool = True) -> dict:
    """``{"input_ids", "labels"}`` for one pair: BOS + prompt + completion + EOS, labels masked on the prompt."""
    bos, eos = special_ids(tokenizer)
    p = tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"] if prompt else []
    c = tokenizer(completion, add_special_tokens=False, verbose=False)["input_ids"] if completion else []
    return assemble(bos, p, c, eos, max_len, completion_only)


def source_examples(source: SourceConfig, data_cfg: DataConfig, tokenizer, max_len: int) -> list[dict]:
    """Reads one source, applies its format, tokenizes every row (in batches, the fast path)."""
    fmt = source.format or data_cfg.format
    records = split_rows(read_records(source.path, source.split, source.subset, source.max_rows), source.holdout)
    if is_chat(fmt):
        return chat_examples(records, fmt, data_cfg, tokenizer, max_len, source.path)
    pairs = [render(fmt, r.row, r.where, tokenizer=tokenizer, template=data_cfg.template) for r in records]
    bos, eos = special_ids(tokenizer)
    prompts = _encode_all([p for p, _ in pairs], tokenizer)
    completions = _encode_all([c for _, c in pairs], tokenizer)
    out, truncated = [], 0
    for rec, (prompt, completion), p, c in zip(records, pairs, prompts, completions):
        ex = assemble(bos, p, c, eos, max_len, data_cfg.completion_only)
        truncated += len(ex["input_ids"]) < len(bos) + len(p) + len(c) + 1
        ex.update(prompt=prompt, completion=completion, row=rec.row)
        out.append(ex)
    if truncated:
        log.warning("%s: %d of %d examples truncated to max_len=%d", source.path, truncated, len(out), max_len)
    return out


def assemble_chat(ids: list[int], spans: list[tuple[int, int]], max_len: int, completion_only: bool = True) -> dict:
    """One conversation as ``input_ids`` and ``labels``: the tokens of ``spans`` (each assistant turn with the
    token that closes it) are targets, the rest -100; with ``completion_only`` False every token is.

    Too long: cut from the right. A turn cut in the middle keeps its first tokens as targets but loses its
    end token, so no half answer is ever followed by a learned stop; turns past the cut are gone.
    ``spans`` on the result are the target ranges that remain, ``length`` the length before the cut.
    """
    kept = ids[:max_len]
    spans = [(s, min(e, len(kept))) for s, e in spans if s < len(kept)]
    if completion_only:
        labels = [IGNORE] * len(kept)
        for s, e in spans:
            labels[s:e] = kept[s:e]
    else:
        labels = [IGNORE] + kept[1:]
    return {"input_ids": kept, "labels": labels, "spans": spans, "length": len(ids)}


def chat_examples(
    records: list[Record], fmt: str, data_cfg: DataConfig, tokenizer, max_len: int, path: str = "data"
) -> list[dict]:
    """Conversations to examples: one per row, every assistant turn a target (``data.assistant_turns``).

    ``prompt`` is the text before the last target span and ``completion`` that span, as for other
    formats; a row whose first target lies past ``max_len`` is dropped (with a warning): it teaches nothing.
    """
    _, template = chat_template_for(tokenizer, data_cfg)
    bos = tokenizer.bos_token_id
    out, truncated, dropped = [], 0, 0
    for rec in records:
        try:
            ids, spans = assistant_spans(conversation(rec.row, sharegpt=fmt == "sharegpt"), tokenizer, template)
        except LmforgeError as e:
            raise LmforgeError(f"{rec.where}: {e}") from None
        if bos is not None and ids[:1] != [bos]:  # BOS once, as generation prompts start (chatml writes none)
            ids, spans = [bos] + ids, [(s + 1, e + 1) for s, e in spans]
        if data_cfg.assistant_turns == "last":
            spans = spans[-1:]
        ex = assemble_chat(ids, spans, max_len, data_cfg.completion_only)
        truncated += ex["length"] > max_len
        if not ex["spans"]:
            dropped += 1
            continue
        s, e = ex["spans"][-1]
        ex.update(
            prompt=tokenizer.decode(ex["input_ids"][:s]), completion=tokenizer.decode(ex["input_ids"][s:e]), row=rec.row
        )
        out.append(ex)
    if truncated:
        log.warning("%s: %d of %d conversations cut to max_len=%d", path, truncated, len(records), max_len)
    if dropped:
        log.warning("%s: %d conversations dropped: no assistant token within max_len=%d", path, dropped, max_len)
    if records and not out:
        raise LmforgeError(f"{path}: no conversation has an assistant token within max_len={max_len}")
    return out


def _encode_all(texts: list[str], tokenizer) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]


def split_indices(n: int, fraction: float, rng: random.Random) -> tuple[list[int], list[int]]:
    """A random (by ``rng``) ``fraction`` of ``range(n)`` held out; at least one row when fraction > 0 and n > 1."""
    n_val = round(n * fraction)
    if fraction > 0 and n > 1:
        n_val = min(max(n_val, 1), n - 1)
    order = list(range(n))
    rng.shuffle(order)
    return sorted(order[n_val:]), sorted(order[:n_val])


def weighted(items: list, weight: float, rng: random.Random) -> list:
    """``round(weight × len(items))`` items: whole copies, then a random subset without repeats for the rest."""
    want = round(weight * len(items))
    copies, rest = divmod(want, len(items)) if items else (0, 0)
    picked = sorted(rng.sample(range(len(items)), rest))
    return items * copies + [items[i] for i in picked]


def load_examples(data_cfg: DataConfig, tokenizer, max_len: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Train and validation examples from ``data_cfg``; the same config and seed give the same lists.

    Each training source is split first (``val_fraction`` of its rows, drawn by seed, go to validation
    unless ``data.val`` names validation sources), then its training part is weighted: a source of
    weight w contributes ``round(w × its training rows)`` examples (w > 1 repeats, w < 1 subsamples).
    The mixture is shuffled by seed. Validation sources are used whole, unweighted.
    """
    if not data_cfg.train:
        raise LmforgeError("data.train is empty: name at least one source (a file, folder or hub dataset)")
    train, val = [], []
    for i, source in enumerate(data_cfg.train):
        examples = source_examples(source, data_cfg, tokenizer, max_len)
        # a string seed is hashed stably (sha512), unlike hash() of a tuple across processes
        rng = random.Random(f"{seed}:{i}:{source.path}")
        if not data_cfg.val and data_cfg.val_fraction > 0:
            keep, held = split_indices(len(examples), data_cfg.val_fraction, rng)
            val += [examples[j] for j in held]
            examples = [examples[j] for j in keep]
        part = weighted(examples, source.weight, rng)
        if not part:
            log.warning("%s: weight %g keeps no examples", source.path, source.weight)
        train += part
    for source in data_cfg.val:
        val += source_examples(source, data_cfg, tokenizer, max_len)
    random.Random(seed).shuffle(train)
    return train, val


def target_tokens(examples: list[dict]) -> int:
    """The number of tokens that carry a loss (labels != -100)."""
    return sum(sum(1 for t in ex["labels"] if t != IGNORE) for ex in examples)


def describe(train: list[dict], val: list[dict], max_len: Optional[int] = None) -> str:
    """One line to print at start: counts of examples and of target tokens."""
    longest = max((len(ex["input_ids"]) for ex in train), default=0)
    cap = f" (max_len {max_len})" if max_len else ""
    return (
        f"data: {len(train)} train / {len(val)} val examples, {target_tokens(train)} train target tokens, "
        f"longest {longest} tokens{cap}"
    )
