"""Least-likely objectives against hand computations; the reference is the adapter-disabled model."""

from __future__ import annotations

import gc
import math
import warnings
from types import SimpleNamespace

import pytest
import torch

from lmforge.core.registry import OBJECTIVES
from lmforge.losses import least_likely as ll
from lmforge.losses import objectives as ob

LN = torch.log


class FixedLogits(torch.nn.Module):
    """A 'model' that returns the given logits (B, T, V), whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids=None, attention_mask=None):
        return SimpleNamespace(logits=self.logits)


def q4():
    return LN(torch.tensor([0.1, 0.2, 0.3, 0.4]))  # logits whose softmax is exactly [.1 .2 .3 .4]


def test_registered_with_reference_flags():
    for name, needs in [
        ("least_likely", True),
        ("least_likely_hard", True),
        ("unlikelihood", False),
        ("confidence_penalty", False),
    ]:
        assert OBJECTIVES.get(name).needs_reference is needs


def test_inverse_kl_by_hand_and_shifted():
    # T=3; only the last token is a target, so only logits position 1 counts (position t predicts t+1).
    ref = torch.zeros(1, 3, 4)
    ref[0, 1] = LN(torch.tensor([1.0, 2.0, 3.0, 4.0]))  # softmax(-z) = [1, 1/2, 1/3, 1/4] / (25/12)
    ref[0, 2] = 0.0  # would be used if labels were not shifted: KL(uniform || uniform) = 0
    logits = torch.zeros(1, 3, 4)  # q uniform
    labels = torch.tensor([[-100, -100, 2]])
    # KL(p||u) = sum p ln(4p), p = [.48 .24 .16 .12]
    hand = 0.48 * math.log(1.92) + 0.24 * math.log(0.96) + 0.16 * math.log(0.64) + 0.12 * math.log(0.48)
    assert ll.inverse_kl_sum(logits, ref, labels, beta=1.0).item() == pytest.approx(hand, rel=1e-5)
    assert hand == pytest.approx(0.1438366, rel=1e-6)
    # the registered wrapper divides by the step's token count and uses objective_args
    batch = {"input_ids": torch.zeros(1, 3, dtype=torch.long), "labels": labels, "num_tokens": 2}
    loss, _ = OBJECTIVES.get("least_likely").fn(FixedLogits(logits), batch, lambda b: ref, beta=1.0)
    assert loss.item() == pytest.approx(hand / 2, rel=1e-5)


def test_inverse_kl_restricted_to_allowed_tokens():
    ref = LN(torch.tensor([1.0, 2.0, 3.0, 4.0])).view(1, 1, 4).expand(1, 2, 4)
    logits = torch.zeros(1, 2, 4, requires_grad=True)
    labels = torch.tensor([[-100, 0]])
    allowed = torch.tensor([False, True, True, True])
    p = [6 / 13, 4 / 13, 3 / 13]  # [1/2, 1/3, 1/4] renormalised; token 0 gets nothing
    kl = ll.inverse_kl_sum(logits, ref, labels, 1.0, allowed)
    assert kl.item() == pytest.approx(sum(x * math.log(4 * x) for x in p), rel=1e-5)
    kl.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 0, 0] > 0  # pushes token 0 down


def test_well_formed_objectives_use_the_tokenizer(tiny_tokenizer):
    from lmforge.model.vocab import well_formed_mask

    V = len(tiny_tokenizer)
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(1, 6, V, generator=g)
    ref[..., tiny_tokenizer.pad_token_id] = -50.0  # the raw argmin: a special token
    batch = {
        "input_ids": torch.zeros(1, 6, dtype=torch.long),
        "labels": torch.ones(1, 6, dtype=torch.long),
        "num_tokens": 5,
    }
    allowed = well_formed_mask(tiny_tokenizer)
    want = ref.masked_fill(~allowed, float("inf")).argmin(-1)  # (1, 6)
    logits = torch.full((1, 6, V), -10.0)
    logits.scatter_(-1, want.unsqueeze(-1), 10.0)  # a model that already predicts the well-formed argmin
    loss, _ = ob.least_likely_hard(
        FixedLogits(logits), batch, lambda b: ref, well_formed=True, tokenizer=tiny_tokenizer
    )
    assert loss.item() < 1e-6
    loss_raw, _ = ob.least_likely_hard(FixedLogits(logits), batch, lambda b: ref)
    assert loss_raw.item() > 10  # unrestricted, the target is the pad token
    soft, _ = ob.least_likely(
        FixedLogits(logits), batch, lambda b: ref, beta=1.0, well_formed=True, tokenizer=tiny_tokenizer
    )
    assert torch.isfinite(soft)


def test_inverse_kl_is_zero_at_the_target_and_beta_sharpens():
    g = torch.Generator().manual_seed(0)
    ref = torch.stack([torch.randperm(7, generator=g) for _ in range(10)]).float().view(2, 5, 7)  # gaps >= 1
    labels = torch.ones(2, 5, dtype=torch.long)
    assert ll.inverse_kl_sum(-2.0 * ref, ref, labels, beta=2.0).item() == pytest.approx(0.0, abs=1e-5)
    # the target is not uniform: uniform q is far from softmax(-3 z) (the failure of the seed's loss)
    assert ll.inverse_kl_sum(torch.zeros_like(ref), ref, labels, beta=3.0).item() > 0.1
    p = ll.inverse_target(ref, 50.0).exp()
    assert torch.equal(p.argmax(-1), ref.argmin(-1)) and (p.max(-1).values > 0.9).all()


def test_hard_ce_toward_argmin_with_and_without_mask():
    ref = torch.zeros(1, 2, 4)
    ref[0, 0] = torch.tensor([0.5, -1.0, 2.0, 0.0])  # argmin 1; among {0, 2, 3}: 3
    ref[0, 1] = torch.tensor([-9.0, 0.0, 0.0, 0.0])  # would be the target without the shift
    logits = q4().expand(1, 2, 4).clone()
    labels = torch.tensor([[-100, 0]])
    assert ll.hard_inverse_ce_sum(logits, ref, labels).item() == pytest.approx(-math.log(0.2), rel=1e-5)
    allowed = torch.tensor([True, False, True, True])
    assert ll.hard_inverse_ce_sum(logits, ref, labels, allowed).item() == pytest.approx(-math.log(0.4), rel=1e-5)


def test_contextual_argmin_by_hand():
    # token 4 is rare everywhere (the plain argmin at both positions); token 0 is unlikely only at position 1
    z = torch.tensor([[[5.0, 1.5, 2.0, 3.0, -4.0], [-3.0, 1.0, 2.0, 3.0, -4.0]]])
    keep = torch.ones(1, 2, dtype=torch.bool)
    assert ll.argmin_targets(z).tolist() == [[4, 4]]
    # bottom 2 tokens at each position; centred logits: pos0 {1: .25, 4: 0}, pos1 {0: -4, 4: 0}
    assert ll.contextual_argmin_targets(z, keep, bottom=0.25).tolist() == [[4, 0]]
    no_zero = torch.tensor([False, True, True, True, True])
    assert ll.contextual_argmin_targets(z, keep, no_zero, bottom=0.25).tolist() == [[4, 4]]
    assert ll.contextual_argmin_targets(z, keep, bottom=0.0).tolist() == [[4, 4]]  # bottom 0: the plain argmin
    # through the objective: CE toward 4 then 0 (the last position has no next token)
    ref = torch.cat([z, torch.zeros(1, 1, 5)], dim=1)  # (1, 3, 5)
    logits = LN(torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2])).expand(1, 3, 5).clone()
    labels = torch.tensor([[-100, 1, 1]])
    want = -math.log(0.2) - math.log(0.1)
    assert ll.hard_inverse_ce_sum(logits, ref, labels, bottom=0.25).item() == pytest.approx(want, rel=1e-5)


def test_hard_well_formed_needs_tokenizer():
    from lmforge.core.errors import LmforgeError

    batch = {
        "input_ids": torch.zeros(1, 2, dtype=torch.long),
        "labels": torch.zeros(1, 2, dtype=torch.long),
        "num_tokens": 1,
    }
    with pytest.raises(LmforgeError, match="well_formed"):
        ob.least_likely_hard(FixedLogits(torch.zeros(1, 2, 4)), batch, lambda b: torch.zeros(1, 2, 4), well_formed=True)


def test_unlikelihood_by_hand():
    # ids 0 1 0 2: position 0 predicts 1 (C={0}); 1 predicts 0 (C={1}); 2 predicts 2 (C={0,1})
    ids = torch.tensor([[0, 1, 0, 2]])
    logits = q4().expand(1, 4, 4).clone()
    ul = -(2 * math.log(0.9) + 2 * math.log(0.8))
    assert ll.unlikelihood_sum(logits, ids, ids).item() == pytest.approx(ul, rel=1e-5)
    nll = -(math.log(0.2) + math.log(0.1) + math.log(0.3))
    batch = {"input_ids": ids, "labels": ids, "num_tokens": 3}
    loss, m = OBJECTIVES.get("unlikelihood").fn(FixedLogits(logits), batch, None, alpha=0.5)
    assert loss.item() == pytest.approx((nll + 0.5 * ul) / 3, rel=1e-5)
    # left padding (token 3) is never a candidate; masked labels are not scored
    ids_p = torch.tensor([[3, 0, 1, 0, 2]])
    lab_p = torch.tensor([[-100, -100, 1, 0, 2]])
    am = torch.tensor([[0, 1, 1, 1, 1]])
    lg_p = q4().expand(1, 5, 4).clone()
    assert ll.unlikelihood_sum(lg_p, ids_p, lab_p, am).item() == pytest.approx(ul, rel=1e-5)


def test_candidates_exclude_the_future():
    ids = torch.tensor([[2, 0, 1]])
    cand = ll.previous_token_candidates(ids, 3)  # (1, 2, 3)
    assert cand[0].tolist() == [[False, False, True], [True, False, True]]


def test_confidence_penalty_by_hand():
    logits = torch.stack([q4(), torch.zeros(4)]).unsqueeze(0)  # position 1 would be used without the shift
    labels = torch.tensor([[-100, 3]])
    H = -sum(p * math.log(p) for p in (0.1, 0.2, 0.3, 0.4))
    batch = {"input_ids": torch.zeros(1, 2, dtype=torch.long), "labels": labels, "num_tokens": 1}
    loss, _ = OBJECTIVES.get("confidence_penalty").fn(FixedLogits(logits), batch, None, beta=0.5)
    assert loss.item() == pytest.approx(-math.log(0.4) - 0.5 * H, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# The reference model
# ---------------------------------------------------------------------------------------------


def _tensor_elements() -> int:
    """Elements held by every live tensor: a copy of the weights would add the model's size."""
    gc.collect()
    with warnings.catch_warnings():  # isinstance() touches deprecated torch module attributes
        warnings.simplefilter("ignore")
        return sum(o.numel() for o in gc.get_objects() if isinstance(o, torch.Tensor))


def _batch(vocab):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, vocab, (2, 12), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_lora_reference_is_the_adapter_disabled_base(tiny_model_dir):
    from lmforge.core.config import LoraConfig
    from lmforge.model import apply_lora, load_pretrained

    base = load_pretrained(tiny_model_dir).eval()
    batch = _batch(base.config.vocab_size)
    with torch.no_grad():
        want = base(**batch).logits
    model = apply_lora(
        load_pretrained(tiny_model_dir), LoraConfig(method="lora", r=4, modules_to_save=["embed_tokens", "lm_head"])
    )
    with torch.no_grad():  # change the adapter and the trained-in-full copies away from the base
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    model.train()
    before = _tensor_elements()
    reference = ob.make_reference(model, peft=True)
    assert _tensor_elements() == before  # no copy of the weights
    assert reference.model is model
    got = reference(batch)
    assert not got.requires_grad
    torch.testing.assert_close(got, want)
    assert model.training and all(m.training for m in model.modules())  # modes restored
    with torch.no_grad():
        adapted = model.eval()(**batch).logits
    assert (adapted - want).abs().max() > 1e-3  # the adapter is live again after the reference call


def test_full_reference_is_a_frozen_copy(tiny_model_dir):
    from lmforge.model import load_pretrained

    model = load_pretrained(tiny_model_dir)
    batch = _batch(model.config.vocab_size)
    reference = ob.make_reference(model, peft=False)
    ptrs = {p.data_ptr() for p in model.parameters()}
    assert all(p.data_ptr() not in ptrs and not p.requires_grad for p in reference.model.parameters())
    want = reference(batch)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    torch.testing.assert_close(reference(batch), want)  # training the model leaves the reference alone


def test_lora_reference_needs_an_adapter(tiny_model_dir):
    from lmforge.core.errors import LmforgeError

    with pytest.raises(LmforgeError, match="adapter"):
        ob.make_reference(torch.nn.Linear(2, 2), peft=True)
