"""Generated JSON schemas through constrained decoding with a tiny tokenizer: a schema is refused in one line
naming it, or every decode under it, whatever the logits and however small the budget it accepts, is valid
JSON."""

from __future__ import annotations

import json

import torch
from fuzzing import budget, chat_tokenizer, outcome, texts, weighted
from hypothesis import given
from hypothesis import strategies as st

from lmforge.generate.constrained import JsonConstraint

scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(-1e6, 1e6), texts)
TYPES = ["string", "integer", "number", "boolean", "null", "object", "array", "strin", 5, None, ["string", "null"]]
PATTERNS = ["^a+$", "[0-9]{2}", "(", "a{3,1}", ".*", "[a-z]+@[a-z]+", "\\d{1,3}", ""]
FORMATS = ["date", "email", "uuid", "date-time", "ipv4", "x"]
leaf = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(TYPES),
        "enum": st.lists(scalars, max_size=3),
        "const": scalars,
        "minimum": st.integers(-5, 5),
        "maximum": st.integers(-5, 5),
        "exclusiveMinimum": st.integers(-5, 5),
        "minLength": st.integers(-1, 4),
        "maxLength": st.integers(-1, 6),
        "pattern": st.sampled_from(PATTERNS),
        "format": st.sampled_from(FORMATS),
    },
)
keys = st.one_of(st.sampled_from(["a", "b", "name", "x y", "ünï", ""]), texts)
schemas = st.recursive(
    st.one_of(leaf, leaf, st.booleans()),
    lambda inner: st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["object", "array", "string", ["object", "null"]]),
            "properties": st.dictionaries(keys, inner, max_size=3),
            "required": st.lists(keys, max_size=3),
            "items": inner,
            "prefixItems": st.lists(inner, max_size=2),
            "anyOf": st.lists(inner, max_size=3),
            "oneOf": st.lists(inner, min_size=1, max_size=2),
            "allOf": st.lists(inner, min_size=1, max_size=2),
            "additionalProperties": st.one_of(st.booleans(), inner),
            "minItems": st.integers(-1, 3),
            "maxItems": st.integers(-1, 4),
            "$defs": st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
            "$ref": st.sampled_from(["#/$defs/a", "#/$defs/b", "#", "#/x"]),
        },
    ),
    max_leaves=6,
)
any_schema = weighted(
    (8, schemas.filter(lambda s: isinstance(s, dict))), (1, scalars), (1, st.lists(scalars, max_size=2))
)


def decode(constraint: JsonConstraint, room: int, seed: int) -> str:
    """One constrained decode from random logits (no model): the processor alone must keep it valid."""
    tok = constraint.tokenizer
    proc = outcome("JSON schema (decode)", constraint.processor, room, greedy=seed % 2 == 0)
    if not hasattr(proc, "c"):
        assert "too small for this schema" in str(proc)
        return ""
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([[tok.bos_token_id]])
    for _ in range(room):
        scores = proc(ids, torch.randn(1, constraint.vocab_size, generator=g) * 4)
        assert torch.isfinite(scores).any(), "every token masked"
        t = int(scores.argmax())
        if t in constraint.stop_ids:
            break
        ids = torch.cat([ids, torch.tensor([[t]])], 1)
    text = tok.decode(ids[0, 1:])
    json.loads(text)  # the promise: valid JSON whatever the model says, within the budget
    return text


@budget(80)
@given(any_schema, st.integers(-3, 24), st.integers(0, 2**16))
def test_schema_then_decode(schema, extra, seed):
    constraint = outcome("JSON schema", JsonConstraint, chat_tokenizer(), schema, names=("schema",))
    if isinstance(constraint, JsonConstraint):
        decode(constraint, max(1, constraint.min_tokens + extra), seed)
