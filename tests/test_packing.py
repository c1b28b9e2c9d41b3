"""Packed fine-tuning batches (data.packing): the loss and the attention of every example are those it has
alone, batches stay a pure function of the step, and runs resume and accumulate exactly."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file

from lmforge.core.config import ModelConfig, load_config
from lmforge.data.batches import Layout
from lmforge.data.packing import PackedExamples, best_fit_decreasing, pack
from lmforge.losses.common import IGNORE, forward_logits, token_nll_sum
from lmforge.model import build_model, set_attention
from lmforge.train.loop import train
from lmforge.train.run import make_accelerator
from tests.conftest import VERSE

pytestmark = pytest.mark.usefixtures("one_thread")

CONTEXT = 64


def _examples(tok, n=12, masked=True, seed=0):
    """Distinct examples of 5..40 tokens; ``masked``: a few prompt tokens at -100, else every label a target
    (the first label too, as for a tokenizer without BOS and completion_only=false)."""
    rng, ids_all = random.Random(seed), tok(VERSE * 4, add_special_tokens=False)["input_ids"]
    out = []
    for i in range(n):
        start, length = rng.randrange(0, len(ids_all) - 40), rng.randint(5, 40)
        ids = ids_all[start : start + length]
        k = (2 + i % 3) if masked else 0
        out.append({"input_ids": ids, "labels": [IGNORE] * k + ids[k:]})
    return out


def _model(tok, impl):
    model = build_model(ModelConfig(preset="tiny"), tok, seed=0).eval()
    set_attention(model, impl)
    return model


def _alone(model, e):
    """Logits (T, V) and summed NLL of one example by itself, positions from 0, no mask."""
    ids = torch.tensor([e["input_ids"]])
    logits = model(input_ids=ids).logits
    return logits[0], token_nll_sum(logits, torch.tensor([e["labels"]]))


def _segments(b):
    """(row, start, length) of every segment (example or padding) of a packed batch."""
    out = []
    for r, pos in enumerate(b["position_ids"].tolist()):
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        out += [(r, s, e - s) for s, e in zip(starts[:-1], starts[1:])]
    return out


# ---------------------------------------------------------------------------------------------
# (a), (b), (c): the loss and the attention are per example, for eager and sdpa
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("masked", [True, False])
@torch.no_grad()
def test_packed_nll_is_the_sum_of_the_examples_alone(tiny_tokenizer, impl, masked):
    model = _model(tiny_tokenizer, impl)
    examples = _examples(tiny_tokenizer, masked=masked)
    rows = best_fit_decreasing([len(e["input_ids"]) for e in examples], list(range(len(examples))), CONTEXT)
    assert max(len(r) for r in rows) > 1  # examples do share rows
    b = pack([[examples[i] for i in r] for r in rows], tiny_tokenizer.pad_token_id, CONTEXT)
    packed = token_nll_sum(forward_logits(model, b), b["labels"])
    alone = sum(_alone(model, e)[1] for e in examples)
    assert packed.item() == pytest.approx(alone.item(), rel=1e-5, abs=1e-5)
    # exactly the unpacked targets, and the token count the step divides by
    n_targets = int((b["labels"][:, 1:] != IGNORE).sum())
    assert n_targets == sum(sum(t != IGNORE for t in e["labels"][1:]) for e in examples)
    # the first token of every example is no target of the one before; padding is no target at all
    for r, s, _ in _segments(b):
        assert b["labels"][r, s] == IGNORE
    assert b["real_tokens"] == sum(len(e["input_ids"]) for e in examples)  # what throughput counts


def test_mask_is_block_diagonal_causal(tiny_tokenizer):
    ex = [e for e in _examples(tiny_tokenizer, n=12) if len(e["input_ids"]) < 18][:3]
    assert len(ex) == 3
    b = pack([ex], tiny_tokenizer.pad_token_id, CONTEXT)
    mask = b["attention_mask"]
    assert mask.shape == (1, 1, CONTEXT, CONTEXT) and mask.dtype == torch.bool
    seg = torch.full((CONTEXT,), -1)  # the example each position belongs to; len(ex) for the padding
    start = 0
    for k, e in enumerate(ex):
        seg[start : start + len(e["input_ids"])] = k
        start += len(e["input_ids"])
    seg[start:] = len(ex)
    assert start < CONTEXT  # there is padding
    for q in range(CONTEXT):
        for k in range(CONTEXT):
            assert bool(mask[0, 0, q, k]) == (k <= q and seg[q] == seg[k]), (q, k)
    assert (b["position_ids"][0, start:] == torch.arange(CONTEXT - start)).all()  # padding: its own segment
    assert (b["input_ids"][0, start:] == tiny_tokenizer.pad_token_id).all()
    assert (b["labels"][0, start:] == IGNORE).all()


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@torch.no_grad()
def test_no_token_attends_across_an_example_boundary(tiny_tokenizer, impl):
    model = _model(tiny_tokenizer, impl)
    one, two = _examples(tiny_tokenizer, n=2)
    other = dict(one, input_ids=[(t + 7) % 100 + 3 for t in one["input_ids"]])  # example 1, other tokens
    n1, n2 = len(one["input_ids"]), len(two["input_ids"])
    logits = [forward_logits(model, pack([[a, two]], tiny_tokenizer.pad_token_id, CONTEXT))[0] for a in (one, other)]
    second = [lg[n1 : n1 + n2] for lg in logits]
    assert not torch.allclose(logits[0][:n1], logits[1][:n1])  # example 1 did change ...
    torch.testing.assert_close(second[0], second[1], atol=0, rtol=0)  # ... example 2 did not see it
    alone, _ = _alone(model, two)  # and is what it is alone, its positions from 0
    torch.testing.assert_close(second[0], alone, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_flash_kernels_get_one_row_cut_at_the_position_restarts(tiny_tokenizer, monkeypatch):
    """A flash kernel gets no mask and the micro-batch as one row, cut where the positions restart (varlen):
    a stand-in kernel doing exactly that (by transformers' own cut) gives the examples' losses alone."""
    import torch.nn.functional as F
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    seen = []

    def varlen(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        pos = kwargs["position_ids"]
        seen.append((query.size(0), attention_mask))
        (cu, _), _ = prepare_fa_kwargs_from_position_ids(pos)
        k, v = (x.repeat_interleave(query.size(1) // x.size(1), 1) for x in (key, value))
        out = torch.empty_like(query)
        for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
            out[:, :, s:e] = F.scaled_dot_product_attention(
                query[:, :, s:e], k[:, :, s:e], v[:, :, s:e], is_causal=True, scale=scaling
            )
        return out.transpose(1, 2).contiguous(), None

    model = _model(tiny_tokenizer, "sdpa")
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "flash_attention_2", varlen)
    monkeypatch.setattr(model.config, "_attn_implementation", "flash_attention_2")
    examples = _examples(tiny_tokenizer)
    rows = best_fit_decreasing([len(e["input_ids"]) for e in examples], list(range(len(examples))), CONTEXT)
    b = pack([[examples[i] for i in r] for r in rows], tiny_tokenizer.pad_token_id, CONTEXT)
    logits = forward_logits(model, b)
    assert logits.shape[:2] == b["input_ids"].shape
    assert seen and all(n == 1 and mask is None for n, mask in seen)
    alone = sum(_alone(model, e)[1] for e in examples)
    assert token_nll_sum(logits, b["labels"]).item() == pytest.approx(alone.item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# (d): batches are a pure function of the step; every example once per epoch
# ---------------------------------------------------------------------------------------------


def test_best_fit_decreasing_fills_rows_and_places_everything():
    rng = random.Random(1)
    lengths = [rng.randint(3, 120) for _ in range(500)]
    rows = best_fit_decreasing(lengths, list(range(500)), 128)
    assert sorted(i for r in rows for i in r) == list(range(500))
    assert all(sum(lengths[i] for i in r) <= 128 for r in rows)
    assert sum(lengths) / (128 * len(rows)) > 0.95  # the bins are nearly full
    with pytest.raises(ValueError, match="does not fit"):
        best_fit_decreasing([129], [0], 128)


def test_train_step_is_deterministic_and_covers_every_example_once_per_epoch(tiny_tokenizer):
    examples = _examples(tiny_tokenizer, n=40)
    pad = tiny_tokenizer.pad_token_id
    data = PackedExamples(examples, [], Layout(2, 2), seed=5, pad_id=pad, context=CONTEXT)
    again = PackedExamples(examples, [], Layout(2, 2), seed=5, pad_id=pad, context=CONTEXT)
    R, G = data.rows_per_epoch, 4
    assert data.steps_per_epoch() == R / G and data.epoch_of(3) == 12 / R

    for step in (0, 3, 7, 1):  # any order: a pure function of the step
        for k, (x, y) in enumerate(zip(data.train_step(step), again.train_step(step))):
            assert x.keys() == y.keys()
            for key in x:
                assert torch.equal(x[key], y[key]) if torch.is_tensor(x[key]) else x[key] == y[key], (step, k, key)

    def epoch(e):
        """The examples (as token tuples) in the global rows of epoch ``e``, which steps read in order."""
        rows = [
            (ids, pos)
            for s in range(e * R // G, (e + 1) * R // G + 1)
            for b in data.train_step(s)
            for ids, pos in zip(b["input_ids"].tolist(), b["position_ids"].tolist())
        ]
        rows = rows[e * R % G : e * R % G + R]
        found = Counter()
        for ids, pos in rows:
            assert len(ids) == CONTEXT
            starts = [i for i, p in enumerate(pos) if p == 0] + [CONTEXT]
            for s, t in zip(starts[:-1], starts[1:]):
                if ids[s] != pad:  # padding is a segment of its own, all PAD
                    found[tuple(ids[s:t])] += 1
                else:
                    assert set(ids[s:t]) == {pad} and t == CONTEXT
        return found, rows

    want = Counter(tuple(e["input_ids"]) for e in examples)
    first, rows0 = epoch(0)
    second, rows1 = epoch(1)
    assert first == want and second == want
    assert rows0 != rows1  # another order


def test_ranks_split_the_global_rows_and_divide_by_the_same_count(tiny_tokenizer):
    examples, pad = _examples(tiny_tokenizer, n=40), tiny_tokenizer.pad_token_id
    whole = PackedExamples(examples, [], Layout(2, 2, world=1), seed=5, pad_id=pad, context=CONTEXT)
    ranks = [
        PackedExamples(examples, [], Layout(1, 2, world=2, rank=r), seed=5, pad_id=pad, context=CONTEXT)
        for r in range(2)
    ]
    for step in range(3):
        mine = [d.train_step(step) for d in ranks]
        all_rows = sorted(row for m in mine for b in m for row in b["input_ids"].tolist())
        assert all_rows == sorted(row for b in whole.train_step(step) for row in b["input_ids"].tolist())
        counts = {b["num_tokens"] for m in mine for b in m} | {b["num_tokens"] for b in whole.train_step(step)}
        targets = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in whole.train_step(step))
        assert counts == {targets}  # the step's global target count, on every rank


# ---------------------------------------------------------------------------------------------
# (f): accumulation is exact with packing; (e): through the CLI, it trains and resumes exactly
# ---------------------------------------------------------------------------------------------


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_batch_1_accum_4_equals_batch_4_accum_1(tmp_path, tiny_tokenizer, optimizer):
    extra = ["train.optimizer=sgd", "train.lr=0.5", "train.grad_clip=0"] if optimizer == "sgd" else []
    examples, finals = _examples(tiny_tokenizer, n=40), []
    for bs, acc in [(4, 1), (1, 4), (2, 2)]:
        cfg = load_config(
            None,
            [
                f"name=acc{bs}",
                f"out_dir={tmp_path / 'runs'}",
                f"log_dir={tmp_path / 'logs'}",
                "train.precision=fp32",
                "train.warmup_steps=2",
                "train.eval_every=1000",
                "train.save_every=1000",
                f"train.batch_size={bs}",
                f"train.grad_accum={acc}",
                "train.max_steps=3",
                *extra,
            ],
        )
        model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
        data = PackedExamples(
            examples, [], Layout(bs, acc), seed=1, pad_id=tiny_tokenizer.pad_token_id, context=CONTEXT
        )
        res = train(cfg, model, tiny_tokenizer, data, accelerator=make_accelerator(cfg))
        finals.append((_params(model), res.losses))
    for p, losses in finals[1:]:
        torch.testing.assert_close(p, finals[0][0], atol=2e-6, rtol=1e-5)
        assert losses == pytest.approx(finals[0][1], rel=1e-5)
    assert finals[0][1][-1] < finals[0][1][0]  # it trained


PAIRS = [
    (f"{w} {i}", a)
    for i, (w, a) in enumerate(
        [
            ("sea", "calm"),
            ("vent", "vivre"),
            ("day", "summer"),
            ("tide", "full"),
            ("aube", "campagne"),
            ("thee", "compare"),
        ]
        * 4
    )
]
TEMPLATE = '### Question: "{input}"\\n ### Answer: {output}'  # YAML-quoted below: '#' starts a YAML comment


@pytest.mark.slow
def test_cli_finetune_with_packing_trains_and_resumes_exactly(tmp_path, tiny_model_dir, monkeypatch):
    from lmforge.cli import main

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"input": q, "output": a}) + "\n" for q, a in PAIRS), encoding="utf-8")
    config = tmp_path / "ft.yaml"
    config.write_text(f"model:\n  base: {tiny_model_dir}\n", encoding="utf-8")
    over = [
        f"out_dir={tmp_path / 'runs'}",
        f"log_dir={tmp_path / 'logs'}",
        f"data.train={data}",
        f"data.val={data}",
        "data.format=template",
        f"data.template='{TEMPLATE}'",
        "data.packing=true",
        "train.precision=fp32",
        "train.batch_size=2",
        "train.max_steps=8",
        "train.warmup_steps=0",
        "train.lr=1e-2",
        "train.log_every=1",
        "train.eval_every=1000",
        "train.save_every=4",
        "train.keep_last=10",
        "sample.every=100000",
    ]
    steps = []
    real = PackedExamples.train_step

    def spy(self, step):
        steps.append(step)
        if step == cut_at:
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(PackedExamples, "train_step", spy)
    cut_at = None
    assert main(["finetune", str(config), "name=full", *over]) == 0
    assert steps == list(range(8))  # the packed source fed the run
    cut_at = 5
    assert main(["finetune", str(config), "name=cut", *over]) == 0  # Ctrl-C at step 5: step 5 saved
    cut_at = None
    assert main(["finetune", str(config), "name=cut", *over, "--resume"]) == 0

    runs = tmp_path / "runs"
    losses = {}
    for name in ("full", "cut"):
        rows = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = {r["step"]: r["loss"] for r in rows if "loss" in r}
        assert any("val_loss" in r for r in rows)  # validation (padded examples) ran
    assert losses["full"][8] < losses["full"][1]  # it trained
    assert losses["cut"] == losses["full"]  # bit-identical on CPU fp32
    full, cut = (load_file(runs / n / "model" / "model.safetensors") for n in ("full", "cut"))
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)


def test_unlikelihood_refuses_packing(tmp_path, tiny_model_dir):
    from lmforge.core.errors import LmforgeError
    from lmforge.train.finetune import load_base, stage_data

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"input": q, "output": a}) + "\n" for q, a in PAIRS), encoding="utf-8")
    cfg = load_config(
        None,
        [
            f"model.base={tiny_model_dir}",
            f"data.train={data}",
            "data.format=template",
            f"data.template='{TEMPLATE}'",
            "data.packing=true",
            "train.objective=unlikelihood",
        ],
    )
    tok, _ = load_base(cfg)
    with pytest.raises(LmforgeError, match="data.packing"):
        stage_data(cfg, cfg.data, tok, CONTEXT, make_accelerator(cfg))
    cfg.train.objective = "causal_lm"
    assert isinstance(stage_data(cfg, cfg.data, tok, CONTEXT, make_accelerator(cfg)), PackedExamples)


def test_throughput_counts_real_tokens_of_packed_rows_not_mask_pairs():
    from lmforge.train.loop import _real_tokens

    mask4d = torch.ones(2, 1, 8, 8, dtype=torch.bool)  # a packed batch's mask: pairs, not tokens
    assert _real_tokens({"input_ids": torch.zeros(2, 8), "attention_mask": mask4d, "real_tokens": 13}) == 13
    assert (
        _real_tokens({"input_ids": torch.zeros(2, 8), "attention_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3])})
        == 13
    )
    assert _real_tokens({"input_ids": torch.zeros(2, 8)}) == 16
