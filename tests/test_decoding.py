"""Least-likely decoding: the processor picks the argmin, respects the well-formed mask, works in generate."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList

from lmforge.generate.least_likely import NegateLogitsProcessor, least_likely_processors, negate_scores
from lmforge.model.vocab import is_well_formed, well_formed_mask

NEG = float("-inf")


@pytest.mark.parametrize(
    "text,ok",
    [
        ("a", True),
        (" the", True),
        ("é", True),
        ("x\n", True),
        (" ", False),
        ("\n\n", False),
        ("", False),
        ("\ufffd", False),
        ("a\x00", False),
        ("\u200b", False),
    ],
)
def test_is_well_formed(text, ok):
    assert is_well_formed(text) is ok


def test_negation_picks_the_argmin_and_keeps_forbidden_tokens_forbidden():
    scores = torch.tensor([[3.0, -2.0, 0.5, NEG], [1.0, 2.0, -5.0, 0.0]])
    out = NegateLogitsProcessor()(None, scores.clone())
    assert out.argmax(-1).tolist() == [1, 2]  # greedy = argmin of the original
    assert out[0, 3] == NEG  # -inf stays -inf, never +inf
    allowed = torch.tensor([True, False, True, True])
    assert negate_scores(scores, allowed).argmax(-1).tolist() == [2, 2]  # argmin among allowed
    # sampling at temperature T draws from softmax(-z / T)
    torch.testing.assert_close(torch.softmax(out[1] / 0.5, -1), torch.softmax(-scores[1] / 0.5, -1))


def test_well_formed_mask_of_a_tokenizer(tiny_tokenizer):
    mask = well_formed_mask(tiny_tokenizer)
    vocab = tiny_tokenizer.get_vocab()
    assert mask.dtype == torch.bool and mask.numel() == len(tiny_tokenizer)
    for special in tiny_tokenizer.all_special_ids:
        assert not mask[special]
    assert mask[vocab["a"]] and not mask[vocab[" "]] and not mask[vocab["\n"]]
    assert well_formed_mask(tiny_tokenizer) is mask  # cached per tokenizer
    padded = well_formed_mask(tiny_tokenizer, len(tiny_tokenizer) + 3)
    assert padded.numel() == len(tiny_tokenizer) + 3 and not padded[-3:].any()


def _generate(model, ids, processors, **kw):
    return model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=6,
        logits_processor=LogitsProcessorList(processors),
        pad_token_id=0,
        **kw,
    )


def test_generate_emits_the_well_formed_argmin(tiny_model_dir, tiny_tokenizer):
    from lmforge.model import load_pretrained

    model = load_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([tiny_tokenizer("The sea is")["input_ids"]])
    allowed = well_formed_mask(tiny_tokenizer, model.config.vocab_size)
    out = _generate(model, ids, least_likely_processors(tiny_tokenizer, well_formed=True), do_sample=False)
    new = out[0, ids.size(1) :]
    with torch.no_grad():
        logits = model(out).logits[0, ids.size(1) - 1 : -1]  # the logits each new token was chosen from
    want = logits.masked_fill(~allowed, float("inf")).argmin(-1)
    assert new.tolist() == want.tolist()
    assert allowed[new].all()
    # unrestricted: the plain argmin; sampling with top_k=1 gives the same (negation runs before top-k)
    raw = _generate(model, ids, least_likely_processors(tiny_tokenizer, well_formed=False), do_sample=False)
    with torch.no_grad():
        raw_logits = model(raw).logits[0, ids.size(1) - 1 : -1]
    assert raw[0, ids.size(1) :].tolist() == raw_logits.argmin(-1).tolist()
    sampled = _generate(
        model, ids, least_likely_processors(tiny_tokenizer, well_formed=False), do_sample=True, top_k=1, temperature=0.7
    )
    assert sampled.tolist() == raw.tolist()
