"""Perplexity, bits per char and bits per byte against a hand computation with Hugging Face logits."""

from __future__ import annotations

import math

import pytest
import torch

from lmforge.evaluate.lm import score_text, token_nll, window_spans

TEXT = "Demain, dès l'aube, à l'heure où blanchit la campagne,\nJe partirai."


@pytest.fixture(scope="module")
def model_and_tok(tiny_model_dir):
    from lmforge.model import load_pretrained, load_tokenizer

    return load_pretrained(tiny_model_dir).eval(), load_tokenizer(tiny_model_dir)


def test_perplexity_matches_hand_computation(model_and_tok):
    model, tok = model_and_tok
    ids = [tok.bos_token_id] + tok(TEXT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]  # (T, V)
    logp = torch.log_softmax(logits.double(), -1)
    nll = -sum(float(logp[t, ids[t + 1]]) for t in range(len(ids) - 1))  # nats, every token after BOS
    got = score_text(model, tok, TEXT)
    assert got["tokens"] == len(ids) - 1
    assert got["nll"] == pytest.approx(nll, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(nll / (len(ids) - 1)), rel=1e-5)
    assert got["bits_per_char"] == pytest.approx(nll / math.log(2) / len(TEXT), rel=1e-5)
    assert got["bits_per_byte"] == pytest.approx(nll / math.log(2) / len(TEXT.encode()), rel=1e-5)
    assert got["bits_per_byte"] < got["bits_per_char"]  # accented letters are two bytes


def test_sliding_window_equals_full_context_when_text_fits(model_and_tok):
    model, tok = model_and_tok
    n = len(tok(TEXT, add_special_tokens=False)["input_ids"]) + 1
    full = score_text(model, tok, TEXT, context=n, stride=n - 1)
    wide = score_text(model, tok, TEXT, context=4 * n, stride=n)
    assert full["nll"] == pytest.approx(wide["nll"], rel=1e-6)


def test_sliding_window_scores_each_token_once_with_its_window(model_and_tok):
    model, tok = model_and_tok
    ids = [tok.bos_token_id] + tok(TEXT * 3, add_special_tokens=False)["input_ids"]
    context, stride = 24, 8
    got = token_nll(model, ids, context, stride, batch_size=3)
    # hand check of one late token: scored in the first window reaching it, with that window's history
    target = len(ids) - 5
    begin, end, _ = next(s for s in window_spans(len(ids), context, stride) if s[2] <= target < s[1])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[begin:end]])).logits[0]
    want = -torch.log_softmax(logits[target - begin - 1], -1)[ids[target]]
    assert float(got[target - 1]) == pytest.approx(float(want), rel=1e-5)
    assert got.shape == (len(ids) - 1,) and torch.isfinite(got).all()


@pytest.mark.parametrize("n,context,stride", [(2, 2, 1), (10, 4, 2), (10, 4, 3), (100, 16, 15), (7, 64, 32)])
def test_window_spans_cover_every_target_once(n, context, stride):
    spans = window_spans(n, context, stride)
    scored = [t for b, e, first in spans for t in range(first, e)]
    assert scored == list(range(1, n))
    assert all(e - b <= context and first > b for b, e, first in spans)


def test_bad_window_is_a_clear_error():
    from lmforge.core.errors import LmforgeError

    with pytest.raises(LmforgeError, match="stride"):
        window_spans(10, 4, 4)
