"""Text generation over Hugging Face ``generate``, with the traps closed.

- ``max_new_tokens`` only (``max_length`` equal to the prompt length generates nothing);
- temperature 0 means greedy (``do_sample=False``), never a division by zero or an ignored setting;
- stops at EOS; seedable; batched with left padding;
- strategies: ``sample`` (temperature/top-k/top-p), ``greedy``, ``least_likely`` (negated logits),
  and JSON-constrained decoding when a schema is given;
- ``dtype``: decode with the model's weights in bf16 or fp16 (a copy kept per model) for speed on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from lmforge.core.errors import LmforgeError
from lmforge.data.chat import stop_ids
from lmforge.generate.constrained import json_logits_processor
from lmforge.generate.decoding import decode, supports
from lmforge.generate.least_likely import least_likely_processors
from lmforge.generate.precision import check_dtype, decoding_model

MIN_TEMPERATURE = 1e-5
"""Temperatures below this are greedy decoding."""


@dataclass
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.8
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    seed: Optional[int] = None
    strategy: str = "sample"  # sample | greedy | least_likely
    well_formed: bool = True  # least_likely: only tokens a reader would see as text
    json_schema: Optional[object] = None  # dict schema, or "any" for any JSON
    stop: tuple[str, ...] = ()
    batch_size: int = 16
    dtype: str = "auto"  # weights to decode with: auto (the model's own), fp32, bf16 or fp16 (``precision``)
    compile: bool = False  # the tokens after the prompt through one compiled graph (``compiled``): for long-lived use

    def __post_init__(self):
        # logits divided by a positive temperature this small overflow to infinities (NaN probabilities, a
        # RuntimeError in sampling); sampling at it is argmax anyway
        if 0 < self.temperature < MIN_TEMPERATURE:
            self.temperature = 0.0


def _hf_kwargs(s: GenerationSettings, tokenizer) -> dict:
    if s.max_new_tokens < 1:
        raise LmforgeError("max_new_tokens must be at least 1")
    if s.temperature < 0:
        raise LmforgeError(f"temperature must be >= 0, got {s.temperature}")
    check_dtype(s.dtype)
    greedy = s.strategy == "greedy" or s.temperature == 0
    kw = dict(
        max_new_tokens=s.max_new_tokens,
        do_sample=not greedy,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=stop_ids(tokenizer) or None,
    )  # EOS, and a chat template's end-of-turn token
    if not greedy:
        kw.update(temperature=s.temperature, top_k=s.top_k or 0, top_p=s.top_p or 1.0)
    return kw


def _processors(s: GenerationSettings, tokenizer, budget: int, vocab_size: int) -> list:
    procs = []
    if s.strategy == "least_likely":
        procs += least_likely_processors(tokenizer, well_formed=s.well_formed)
    elif s.strategy not in ("sample", "greedy"):
        raise LmforgeError(f"unknown strategy {s.strategy!r}; use sample, greedy or least_likely")
    if s.json_schema is not None:
        procs.append(
            json_logits_processor(
                tokenizer,
                None if s.json_schema == "any" else s.json_schema,
                budget,
                vocab_size=vocab_size,
                greedy=s.strategy == "greedy" or s.temperature == 0,
            )
        )
    return procs


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    cut = min((text.find(x) for x in stops if x and x in text), default=-1)
    return text[:cut] if cut >= 0 else text


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], settings: Optional[GenerationSettings] = None) -> list[str]:
    """Completions (the new text only) for each prompt, in order.

    Each prompt gets its own budget: ``max_new_tokens``, or less where the prompt is so long that the model's
    positions run out (``_room``). Prompts batch with others of the same budget, so a long prompt in the
    batch never cuts a short one's answer; when no prompt is that long, batches keep the given order.
    """
    settings = settings or GenerationSettings()
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    model.eval()
    _hf_kwargs(settings, tokenizer)  # bad settings fail before any work
    ids = prompt_ids(tokenizer, prompts)
    limit = getattr(model.config, "max_position_embeddings", None)
    budgets = [_room(limit, len(x), settings.max_new_tokens) for x in ids]
    out: list[str] = [""] * len(prompts)
    for budget in dict.fromkeys(budgets):  # in order of first appearance
        rows = [i for i, b in enumerate(budgets) if b == budget]
        for start in range(0, len(rows), settings.batch_size):
            chunk = rows[start : start + settings.batch_size]
            gen = generate_ids(model, tokenizer, [ids[i] for i in chunk], settings, budget)
            for i, row in zip(chunk, gen):
                out[i] = _cut_at_stop(tokenizer.decode(row, skip_special_tokens=True), settings.stop)
    return out


@torch.no_grad()
def generate_ids(
    model, tokenizer, ids: list[list[int]], settings: GenerationSettings, budget: int, observers=(), stopping=()
) -> torch.Tensor:
    """New tokens (rows, ``budget`` or fewer columns) for one batch of prompt ids, all under ``settings``.

    The step hooks, for callers that stream (``lmforge serve``): ``observers`` are ``LogitsProcessor``s that
    run first, so they see the model's raw logits; ``stopping`` are ``StoppingCriteria`` that may end single
    rows after each step. No seeding here: ``generate`` seeds once per call.
    """
    from transformers import LogitsProcessorList, StoppingCriteriaList

    model = decoding_model(model, settings.dtype)  # a cast copy, made once per model; logits stay float32
    enc = _pad(tokenizer, ids, next(model.parameters()).device)
    procs = [*observers, *_processors(settings, tokenizer, budget, model.config.vocab_size)]  # fresh state per batch
    kw = {**_hf_kwargs(settings, tokenizer), "max_new_tokens": budget}
    if settings.compile and not supports(model):
        raise LmforgeError("compiled decoding is for Llama-architecture models; decode without --compile")
    if supports(model):  # generate's tokens, without its per-step overhead
        gen = decode(model, **enc, **kw, logits_processor=procs, stopping_criteria=stopping, compiled=settings.compile)
        return gen[:, enc["input_ids"].shape[1] :]
    gen = model.generate(
        **enc,
        **kw,
        logits_processor=LogitsProcessorList(procs),
        stopping_criteria=StoppingCriteriaList(stopping),
    )
    return gen[:, enc["input_ids"].shape[1] :]


def _room(limit: Optional[int], prompt_len: int, wanted: int) -> int:
    """Caps one prompt's new tokens at the model's maximum positions: past them a RoPE model produces noise."""
    if limit is None or prompt_len + wanted <= limit:
        return wanted
    if prompt_len >= limit:
        raise LmforgeError(f"prompt is {prompt_len} tokens, the model's maximum is {limit}; shorten the prompt")
    return limit - prompt_len


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Each prompt's ids, starting with BOS (or EOS for an empty prompt without BOS), as training saw them."""
    enc = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None:  # training saw BOS before every document and example
        return [x if x[:1] == [bos] else [bos] + x for x in enc]
    return [x or [tokenizer.eos_token_id] for x in enc]


def _pad(tokenizer, ids: list[list[int]], device) -> dict:
    """A batch the tokenizer left-pads (generation continues from the right edge)."""
    no_pad = tokenizer.pad_token_id is None  # then pad with EOS (masked out either way), and leave no trace
    if no_pad:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        enc = tokenizer.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
    finally:
        if no_pad:
            tokenizer.pad_token = None
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}
