"""Text and JSON metrics: one ``(prediction, reference, **ctx) -> float`` per example, averaged over a task.

Each is registered with its direction (``@metric(name, higher_is_better=...)``); ``direction(name)`` is
the one place that says which way any number lmforge reports is better (best checkpoints, reports).
Pure functions: easy to check against a hand computation.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any, Optional

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import METRICS, Metric, metric

# Letters and digits of any script; rouge_score's default keeps only [a-z0-9] ("été" -> "t").
_WORD = re.compile(r"[^\W_]+")


class UnicodeTokenizer:
    """rouge_score's tokenizer contract (``tokenize(text) -> list[str]``), for every script.

    On ASCII text it splits exactly like rouge_score's default (lowercase, runs of letters and digits).
    """

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


_SCORERS: dict = {}


def _rouge(prediction: str, reference: str, kind: str) -> float:
    from rouge_score import rouge_scorer

    if "scorer" not in _SCORERS:
        _SCORERS["scorer"] = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=UnicodeTokenizer())
    return _SCORERS["scorer"].score(reference, prediction)[kind].fmeasure


@metric("rouge1")
def rouge1(prediction: str, reference: str, **_: Any) -> float:
    return _rouge(prediction, reference, "rouge1")


@metric("rouge2")
def rouge2(prediction: str, reference: str, **_: Any) -> float:
    return _rouge(prediction, reference, "rouge2")


@metric("rougeL")
def rougeL(prediction: str, reference: str, **_: Any) -> float:
    return _rouge(prediction, reference, "rougeL")


@metric("exact_match")
def exact_match(prediction: str, reference: str, **_: Any) -> float:
    return float(prediction.strip() == reference.strip())


# ---- JSON ---------------------------------------------------------------------------------------

_INVALID = object()


def parse_json(text: str) -> Any:
    """The JSON value of ``text`` (surrounding whitespace allowed), or ``_INVALID``."""
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return _INVALID


def _canon(value: Any) -> Any:
    """A form where ``true`` and ``1`` differ (Python says ``True == 1``) and ``1.0`` equals ``1``."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, (int, float)):
        return ("num", int(value) if isinstance(value, float) and value.is_integer() else value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, list):
        return ("list", tuple(_canon(v) for v in value))
    return ("obj", tuple(sorted((k, _canon(v)) for k, v in value.items())))


def canonical_json(value: Any) -> str:
    """One spelling per JSON value: keys sorted, no spaces, integral floats as integers."""

    def norm(v):
        if isinstance(v, float) and v.is_integer() and math.isfinite(v):
            return int(v)
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    return json.dumps(norm(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@metric("json_valid")
def json_valid(prediction: str, reference: str = "", **_: Any) -> float:
    return float(parse_json(prediction) is not _INVALID)


@metric("schema_valid")
def schema_valid(prediction: str, reference: str = "", *, schema: Optional[dict] = None, **_: Any) -> float:
    """Valid JSON that also satisfies the task's schema (any JSON when there is none)."""
    value = parse_json(prediction)
    if value is _INVALID:
        return 0.0
    if schema is None:
        return 1.0
    import jsonschema

    return float(jsonschema.Draft202012Validator(schema).is_valid(value))


@metric("json_em")
def json_exact_match(prediction: str, reference: str, **_: Any) -> float:
    """Canonical JSON exact match: same value whatever the key order or spacing; invalid JSON scores 0."""
    pred, ref = parse_json(prediction), parse_json(reference)
    if pred is _INVALID or ref is _INVALID:
        return 0.0
    return float(_canon(pred) == _canon(ref))


def json_facts(value: Any, context: tuple = ()) -> Counter:
    """The facts a JSON value states, for partial credit.

    Each scalar field is one fact; a nested list or object is read in the context of its parent's scalar
    fields, so ``{"canto": 2, "lines": [1, 5]}`` states canto=2, (canto=2, line 1), (canto=2, line 5).
    """
    facts: Counter = Counter()
    if isinstance(value, dict):
        scalars = tuple(sorted((k, _canon(v)) for k, v in value.items() if not isinstance(v, (dict, list))))
        for field in scalars:
            facts[context + (field,)] += 1
        for k, v in sorted(value.items()):
            if isinstance(v, (dict, list)):
                facts += json_facts(v, context + scalars + (k,))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                facts += json_facts(item, context)
            else:
                facts[context + (_canon(item),)] += 1
    else:
        facts[context + (_canon(value),)] += 1
    return facts


def f1(predicted: Counter, expected: Counter) -> float:
    """F1 of two multisets; two empty sets agree perfectly."""
    if not predicted and not expected:
        return 1.0
    hit = sum((predicted & expected).values())
    if hit == 0:
        return 0.0
    p, r = hit / sum(predicted.values()), hit / sum(expected.values())
    return 2 * p * r / (p + r)


@metric("field_f1")
def field_f1(prediction: str, reference: str, **_: Any) -> float:
    """F1 over the facts of the reference JSON (partial credit per canto and per line); invalid JSON is 0."""
    pred, ref = parse_json(prediction), parse_json(reference)
    if pred is _INVALID or ref is _INVALID:
        return 0.0
    return f1(json_facts(pred), json_facts(ref))


# Language-model metrics are computed on whole texts (``lmforge.evaluate.lm``): declared for their direction.
for _name in ("perplexity", "bits_per_char", "bits_per_byte"):
    METRICS.add(_name, Metric(_name, None, higher_is_better=False))

# The training loop's own numbers (val_loss, val_ppl, val_bpc, val_nats_per_char, ...): lower is better.
_LOWER_IS_BETTER = ("loss", "nll", "ppl", "bpc", "per_char")


def direction(name: str) -> Optional[bool]:
    """True when higher is better, False when lower is, None for a name lmforge knows nothing about.

    Accepts the names reports use: ``rouge1``, ``json_em@json`` (constrained), ``perplexity:val.txt``."""
    base = name.split(":")[0].split("@")[0]
    if base in METRICS:
        return METRICS.get(base).higher_is_better
    if any(w in base for w in _LOWER_IS_BETTER):
        return False
    return None


def higher_is_better(name: str) -> bool:
    """``direction`` for choosing a best checkpoint: an unknown (evaluator's own) score counts as higher-is-better."""
    d = direction(name)
    return True if d is None else d


def aggregate(metric_names: list[str], predictions: list[str], references: list[str], **ctx: Any) -> dict[str, float]:
    """Each registered metric over the examples: its ``corpus`` value where it has one, else the mean."""
    out = {}
    for name in metric_names:
        m = METRICS.get(name)
        if m.fn is None:
            raise LmforgeError(f"metric {name!r} is computed on whole texts (lmforge eval --text), not per example")
        if m.corpus is not None:
            out[name] = m.corpus(predictions, references, **ctx) if predictions else float("nan")
            continue
        scores = [m.fn(p, r, **ctx) for p, r in zip(predictions, references)]
        out[name] = sum(scores) / len(scores) if scores else float("nan")
    return out
