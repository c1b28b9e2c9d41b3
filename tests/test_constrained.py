"""Constrained JSON decoding: always valid, even from a randomly initialised model, within the budget."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList

from lmforge.core.errors import LmforgeError
from lmforge.generate.constrained import check_schema, json_constraint, json_logits_processor
from lmforge.scoring.metrics import json_valid, schema_valid

# integers and arrays, nested, nothing bounded: what makes a random model run out of tokens
SCHEMA = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "tags": {"type": "array", "items": {"type": "integer"}},
                    "name": {"type": "string"},
                },
                "required": ["id", "tags", "name"],
            },
        },
        "done": {"type": "boolean"},
    },
    "required": ["items", "done"],
}


def _generate(model, tok, schema, budget, seed, sample, constrained=True):
    enc = tok(['Answer: {"references": ', "Le vent se lève", "?", "The sea is calm"], return_tensors="pt", padding=True)
    procs = (
        LogitsProcessorList([json_logits_processor(tok, schema, budget, greedy=not sample)]) if constrained else None
    )
    torch.manual_seed(seed)
    out = model.generate(
        **enc,
        max_new_tokens=budget,
        do_sample=sample,
        logits_processor=procs,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from lmforge.model import load_tokenizer

    t = load_tokenizer(tiny_model_dir)
    t.padding_side = "left"
    return t


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("schema", [SCHEMA, None], ids=["schema", "any"])
def test_always_valid_from_a_random_model(tok, seed, schema):
    from lmforge.core.config import ModelConfig
    from lmforge.model import build_model

    model = build_model(ModelConfig(preset="tiny"), tok, seed=seed).eval()
    budget = json_constraint(tok, schema).min_tokens + 24  # tight: a few steps of freedom, then closing
    texts = _generate(model, tok, schema, budget, seed, sample=True) + _generate(
        model, tok, schema, budget, seed, False
    )
    assert all(json_valid(t) for t in texts), texts
    assert all(schema_valid(t, schema=schema) for t in texts), texts
    # control: free decoding from the same model is not valid JSON, so the validity above is the constraint's
    free = _generate(model, tok, schema, budget, seed, sample=False, constrained=False)
    assert sum(json_valid(t) for t in free) < len(free), free


def test_budget_check_is_what_closes_the_document(tok):
    """With a tight budget the checks fire; the grammar alone lets a random model run out of tokens."""
    from lmforge.core.config import ModelConfig
    from lmforge.model import build_model

    model = build_model(ModelConfig(preset="tiny"), tok, seed=1).eval()
    c = json_constraint(tok, SCHEMA)
    proc = c.processor(c.min_tokens + 10, greedy=True)
    enc = tok(["x"], return_tensors="pt")
    out = model.generate(
        **enc,
        max_new_tokens=c.min_tokens + 10,
        do_sample=False,
        logits_processor=LogitsProcessorList([proc]),
        pad_token_id=tok.pad_token_id,
    )
    assert proc.restricted_steps > 0
    assert json_valid(tok.decode(out[0, 1:], skip_special_tokens=True))


def test_never_allows_what_the_grammar_forbids(tok):
    import xgrammar as xgr

    c = json_constraint(tok, SCHEMA)
    proc = c.processor(500)
    scores = proc(torch.tensor([[5]]), torch.zeros(1, len(tok)))  # far from the budget: the grammar's mask
    m = xgr.GrammarMatcher(c.compiled)
    mask = xgr.allocate_token_bitmask(1, len(tok))
    m.fill_next_token_bitmask(mask, 0)
    grammar = torch.zeros(1, len(tok))
    xgr.apply_token_bitmask_inplace(grammar, mask)
    assert torch.isfinite(scores).sum() > 0
    assert (torch.isfinite(scores) <= torch.isfinite(grammar)).all()
    assert not torch.isfinite(scores[0, tok.pad_token_id])


def test_bad_schema_and_budget_are_one_line_errors(tok):
    with pytest.raises(LmforgeError, match="invalid JSON schema"):
        check_schema({"type": "no-such-type"})
    with pytest.raises(LmforgeError, match="JSON schema is an object"):
        check_schema(["type"])
    with pytest.raises(LmforgeError, match="too small"):
        json_logits_processor(tok, SCHEMA, 3)
    with pytest.raises(LmforgeError, match="cannot spell|can spell"):  # the tiny alphabet has no "k"
        json_constraint(tok, {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]})


def test_whitespace_is_not_free(tok):
    c = json_constraint(tok, None)
    import xgrammar as xgr

    m = xgr.GrammarMatcher(c.compiled)
    assert m.accept_string('{"a": [1, 2]}')
    m = xgr.GrammarMatcher(c.compiled)
    assert not m.accept_string("   {")
