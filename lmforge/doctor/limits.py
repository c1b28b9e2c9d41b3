"""The doctor's checks of generation settings and lengths: ``max_length`` that counts the prompt, sampling
settings that greedy decoding ignores, prompts and rows past the model's positions. Registered after the
model, tokenizer and data checks of ``checks.py`` (the package imports both)."""

from __future__ import annotations

from lmforge.doctor.checks import CHECKS, SAMPLING_DEFAULTS, Finding, Setup, full_text, max_positions, row_kind


@CHECKS.register("max_length")
def check_max_length(s: Setup) -> list[Finding]:
    """``max_length`` counts the prompt: when the prompt is as long, nothing is generated."""
    gen = s.generation or {}
    limit = gen.get("max_length")
    if not limit or gen.get("max_new_tokens"):
        return []  # max_new_tokens wins over max_length in Hugging Face generate
    if s.tokenizer is None or not s.prompts:
        return [
            Finding(
                "max_length",
                "info",
                f"generation max_length={limit} counts the prompt's tokens too",
                "set max_new_tokens instead of max_length",
            )
        ]
    longest = max(range(len(s.prompts)), key=lambda i: s.n_tokens(s.prompts[i]))
    n = s.n_tokens(s.prompts[longest])
    if n < limit:
        return []
    return [
        Finding(
            "max_length",
            "error",
            f"generation max_length={limit} <= prompt length {n} tokens "
            f"(prompt {longest + 1}): nothing would be generated",
            f"set max_new_tokens (e.g. {limit}) instead of max_length",
        )
    ]


@CHECKS.register("sampling")
def check_sampling(s: Setup) -> list[Finding]:
    """Temperature/top-p/top-k only act when sampling; temperature 0 with sampling on is refused by Hugging Face."""
    gen = s.generation or {}
    do_sample, temp = gen.get("do_sample"), gen.get("temperature")
    if do_sample and temp is not None and temp <= 0:
        return [
            Finding(
                "sampling",
                "error",
                f"temperature={temp} with do_sample=true: sampling needs a temperature > 0",
                "for greedy decoding set do_sample=false; else a temperature such as 0.7",
            )
        ]
    knobs = {k: gen[k] for k, d in SAMPLING_DEFAULTS.items() if gen.get(k) is not None and gen[k] != d}
    if do_sample or not knobs or (do_sample is None and knobs.get("temperature") == 0):
        return []
    told = ", ".join(f"{k}={v}" for k, v in knobs.items())
    why = "do_sample=false" if do_sample is False else "do_sample is not set (Hugging Face defaults to greedy)"
    return [
        Finding(
            "sampling",
            "warning",
            f"{told} has no effect: {why}",
            "set do_sample=true to sample, or drop the sampling settings for greedy decoding",
        )
    ]


@CHECKS.register("context")
def check_context(s: Setup) -> list[Finding]:
    """Prompts past the model's maximum positions are out of what it was trained on (or crash it)."""
    limit = max_positions(s)
    if s.tokenizer is None or limit is None:
        return []
    out = []
    new = (s.generation or {}).get("max_new_tokens") or 0
    for i, p in enumerate(s.prompts or []):
        n = s.n_tokens(p)
        if n > limit:
            out.append(
                Finding(
                    "context",
                    "error",
                    f"prompt {i + 1} has {n} tokens, more than the model's {limit} positions",
                    f"truncate it to its last {limit - max(new, 1)} tokens, split it into "
                    "segments, or use a model with a longer context",
                )
            )
            break
        if n + new > limit:
            out.append(
                Finding(
                    "context",
                    "warning",
                    f"prompt {i + 1} ({n} tokens) + max_new_tokens={new} exceeds the model's {limit} positions",
                    f"set max_new_tokens <= {limit - n} or shorten the prompt",
                )
            )
            break
    long_rows = [
        i for i, r in enumerate(s.rows or []) if row_kind(r) not in (None, "text") and s.n_tokens(full_text(r)) > limit
    ]
    if long_rows:  # text rows are packed into blocks, so only structured rows lose their ends
        out.append(
            Finding(
                "context",
                "warning",
                f"{len(long_rows)} rows are longer than the model's {limit} positions "
                f"(first: {s.row_at(long_rows[0])}): truncation cuts off their completions and EOS",
                "shorten or split those rows, or train with a longer model.context",
            )
        )
    return out
