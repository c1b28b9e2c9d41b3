"""Unlikeliness measurements against hand-made cases."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from lmforge.evaluate import unlikeliness as ul
from lmforge.scoring import unlikeliness as us

Z = torch.tensor([[3.0, 1.0, 4.0, 0.0, 2.0]])  # order, most to least likely: 2 0 4 1 3


def test_rank_hits_and_surprisal_by_hand():
    refs = Z.expand(4, 5)
    preds = torch.tensor([2, 3, 0, 1])  # argmax, argmin, second, fourth
    s = us.position_stats(refs, preds, allowed=torch.tensor([True, True, True, False, True]))
    assert s["rank"].tolist() == [0.0, 1.0, 0.25, 0.75]
    assert s["below"].tolist() == [4, 0, 3, 1]
    logz = math.log(sum(math.exp(v) for v in Z[0].tolist()))
    assert s["surprisal"][1].item() == pytest.approx(logz - 0.0, rel=1e-5)
    assert s["max_surprisal"][0].item() == pytest.approx(logz, rel=1e-5)
    m = us.summarize(s, ks=(1, 2))
    assert m["hit@1"] == 0.25 and m["hit@2"] == 0.5
    assert m["median_rank"] == 0.25  # torch's median: the lower of the two middle values
    assert m["mean_rank"] == pytest.approx(0.5)
    assert m["well_formed"] == 0.75
    assert m["distinct"] == 4 and m["top_share"] == 0.25


def test_collapse_shows_in_top_share():
    s = us.position_stats(Z.expand(5, 5), torch.full((5,), 3))
    m = us.summarize(s)
    assert m["median_rank"] == 1.0 and m["surprisal_ratio"] == pytest.approx(1.0)
    assert m["distinct"] == 1 and m["top_share"] == 1.0


class Negated(torch.nn.Module):
    """A model whose logits are the negation of another's: its argmax is the other's argmin."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids=None, attention_mask=None):
        return SimpleNamespace(logits=-self.model(input_ids=input_ids, attention_mask=attention_mask).logits)


def test_metrics_in_the_training_loop(tiny_model_dir):
    from lmforge.model import load_pretrained

    model = load_pretrained(tiny_model_dir).eval()
    ids = torch.randint(4, model.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :5] = -100  # the prompt: contexts 0..3 are not scored
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    ref_fn = lambda b: model(input_ids=b["input_ids"]).logits
    same = us.unlikeliness_metrics(model, ref_fn, batch)
    assert same["median_rank"] == 0.0 and same["positions"] == 2 * 5
    inverse = us.unlikeliness_metrics(Negated(model), ref_fn, batch)
    assert inverse["median_rank"] == 1.0 and inverse["hit@1"] == 1.0
    # the loop's evaluator form: fn(model, step) over the validation batches, prefixed for TensorBoard
    data = SimpleNamespace(val_batches=lambda n: [batch, batch][:n])
    model.train()
    logged = us.unlikeliness_evaluator(ref_fn, data, max_batches=2)(model, 10)
    assert logged["unlikely/median_rank"] == 0.0 and logged["unlikely/positions"] == 2 * 2 * 5
    assert model.training  # its mode is given back


def test_table_with_the_baselines(tiny_model_dir, tiny_tokenizer):
    from lmforge.model import load_pretrained
    from lmforge.model.vocab import well_formed_mask
    from tests.conftest import VERSE

    ref = load_pretrained(tiny_model_dir).eval()
    V = ref.config.vocab_size
    allowed = well_formed_mask(tiny_tokenizer, V)
    cands = {
        "reference argmax": ul.reference_argmax(),
        "negated logits": ul.negated_reference(allowed),
        "random token": ul.random_token(V, seed=0),
        "trained (here: negated model)": ul.model_argmax(Negated(ref)),
    }
    rows = ul.unlikeliness_table(ref, cands, tiny_tokenizer, [VERSE * 3], context=32, batch_size=4)
    by = {r["name"]: r for r in rows}
    assert by["reference argmax"]["median_rank"] == 0.0 and by["reference argmax"]["hit@1"] == 0.0
    assert by["negated logits"]["well_formed"] == 1.0 and by["negated logits"]["median_rank"] > 0.9
    assert 0.3 < by["random token"]["mean_rank"] < 0.7
    assert by["trained (here: negated model)"]["hit@1"] == 1.0
    assert by["trained (here: negated model)"]["surprisal_ratio"] == pytest.approx(1.0, rel=1e-5)
    table = ul.format_table(rows)
    assert table.count("\n") == 1 + len(rows) and "| negated logits |" in table
