"""The loop's invariants: accumulation is exact, resume equals an uninterrupted run, Ctrl-C saves."""

from __future__ import annotations

import pytest
import torch

from lmforge.core.config import ModelConfig, load_config
from lmforge.data.batches import ExampleBatches, Layout, PackedStream
from lmforge.model import build_model
from lmforge.train.checkpoint import latest_checkpoint
from lmforge.train.loop import train
from lmforge.train.run import make_accelerator
from tests.conftest import VERSE


def _cfg(tmp_path, name, **train):
    over = [
        f"name={name}",
        f"out_dir={tmp_path / 'runs'}",
        f"log_dir={tmp_path / 'logs'}",
        "train.precision=fp32",
        "train.warmup_steps=2",
        "train.eval_every=1000",
        "train.save_every=1000",
        "train.grad_clip=1.0",
    ]
    over += [f"train.{k}={v}" for k, v in train.items()]
    return load_config(None, over)


def _examples(tok, n=8):
    """Examples of different lengths with prompt tokens masked: padding and token counts matter."""
    out = []
    for i in range(n):
        ids = tok(VERSE[: 20 + 9 * i], add_special_tokens=False)["input_ids"]
        labels = [-100] * (3 + i % 4) + ids[3 + i % 4 :]
        out.append({"input_ids": ids, "labels": labels})
    return out


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_batch_1_accum_8_equals_batch_8_accum_1(tmp_path, tiny_tokenizer, optimizer):
    # under SGD without clipping the step is the gradient itself: a scale error cannot hide in AdamW's normalisation
    extra = {"optimizer": "sgd", "lr": 0.5, "grad_clip": 0} if optimizer == "sgd" else {}
    finals = []
    for bs, acc in [(8, 1), (1, 8), (2, 4)]:
        cfg = _cfg(tmp_path, f"acc{bs}", batch_size=bs, grad_accum=acc, max_steps=3, **extra)
        model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
        data = ExampleBatches(
            _examples(tiny_tokenizer), [], Layout(bs, acc), seed=1, pad_id=tiny_tokenizer.pad_token_id
        )
        res = train(cfg, model, tiny_tokenizer, data, accelerator=make_accelerator(cfg))
        finals.append((_params(model), res.losses))
    for p, losses in finals[1:]:
        torch.testing.assert_close(p, finals[0][0], atol=2e-6, rtol=1e-5)
        assert losses == pytest.approx(finals[0][1], rel=1e-5)
    assert finals[0][1][-1] < finals[0][1][0]  # it trained


class _Interrupt:
    """Wraps a batch source and raises KeyboardInterrupt when asked for ``at``: a Ctrl-C mid-run."""

    def __init__(self, data, at):
        self.data, self.at = data, at

    def train_step(self, step):
        if step == self.at:
            raise KeyboardInterrupt
        return self.data.train_step(step)

    def val_batches(self, n):
        return self.data.val_batches(n)


def _stream(tok, bs=4):
    ids = torch.tensor(tok(VERSE * 30, add_special_tokens=False)["input_ids"])
    return PackedStream(ids, ids[:400], block=32, layout=Layout(bs, 1), seed=3)


def test_resume_equals_uninterrupted_and_ctrl_c_saves(tmp_path, tiny_tokenizer):
    # dropout on: the resumed run draws the same masks only if the RNG state comes back with the weights
    arch = ModelConfig(preset="tiny", dropout=0.2)
    full_cfg = _cfg(tmp_path, "full", batch_size=4, max_steps=8)
    model = build_model(arch, tiny_tokenizer, seed=0)
    full = train(full_cfg, model, tiny_tokenizer, _stream(tiny_tokenizer), accelerator=make_accelerator(full_cfg))
    full_params = _params(model)

    cut_cfg = _cfg(tmp_path, "cut", batch_size=4, max_steps=8)
    model = build_model(arch, tiny_tokenizer, seed=0)
    first = train(
        cut_cfg, model, tiny_tokenizer, _Interrupt(_stream(tiny_tokenizer), at=5), accelerator=make_accelerator(cut_cfg)
    )
    assert first.interrupted and first.step == 5
    assert (cut_cfg.run_dir / "checkpoints" / "step-000005" / "state.json").is_file()

    model = build_model(arch, tiny_tokenizer, seed=123)  # fresh weights: all must come back
    torch.manual_seed(999)  # and a different RNG state: it must come back too
    second = train(
        cut_cfg,
        model,
        tiny_tokenizer,
        _stream(tiny_tokenizer),
        accelerator=make_accelerator(cut_cfg),
        resume_from=latest_checkpoint(cut_cfg.run_dir),
    )
    assert first.losses + second.losses == full.losses  # bit-identical on CPU fp32
    torch.testing.assert_close(_params(model), full_params, atol=0, rtol=0)


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, tiny_tokenizer):
    import pytest

    from lmforge.core.errors import LmforgeError

    cfg = _cfg(tmp_path, "nan", batch_size=4, max_steps=6, save_every=2)
    model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
    data = _stream(tiny_tokenizer)

    class Poison(_Interrupt):
        def train_step(self, step):
            if step == 3:
                with torch.no_grad():
                    model.model.embed_tokens.weight.fill_(float("nan"))
            return self.data.train_step(step)

    with pytest.raises(LmforgeError, match="loss became nan at step 3"):
        train(cfg, model, tiny_tokenizer, Poison(data, None), accelerator=make_accelerator(cfg))
    latest = (cfg.run_dir / "checkpoints" / "latest").read_text().strip()
    assert latest == "step-000002"


def test_group_by_length_keeps_the_epoch_and_cuts_padding(tiny_tokenizer):
    import random

    rng = random.Random(0)
    examples = [{"input_ids": [5] * n, "labels": [5] * n} for n in (rng.randint(4, 200) for _ in range(96))]
    plain = ExampleBatches(examples, [], Layout(8, 1), seed=1, pad_id=0)
    grouped = ExampleBatches(examples, [], Layout(8, 1), seed=1, pad_id=0, group_by_length=True)
    assert sorted(grouped._perm(0)) == list(range(96))  # every example once per epoch
    assert grouped._perm(0) != sorted(grouped._perm(0), key=lambda i: len(examples[i]["input_ids"]))  # not sorted

    def padded(data):
        return sum(int(b["input_ids"].numel()) for s in range(12) for b in data.train_step(s))

    real = sum(len(e["input_ids"]) for e in examples)
    assert padded(grouped) < 0.75 * padded(plain) and padded(grouped) >= real


def test_samples_during_training_leave_its_random_numbers_alone(tmp_path, tiny_tokenizer):
    """Sampling mid-run seeds generation; the dropout masks after it, and so the losses, stay those of a run
    that does not sample (a sweep's trial without samples and its re-run with them train alike)."""
    from lmforge.train.samples import Sampler

    ids = torch.tensor(tiny_tokenizer(VERSE * 20, add_special_tokens=False)["input_ids"])
    losses = {}
    for every in (2, 1000):
        cfg = _cfg(tmp_path, f"every{every}", max_steps=6, eval_every=2, eval_batches=1)
        cfg.sample.every, cfg.sample.max_new_tokens = every, 4
        model = build_model(ModelConfig(preset="tiny", context=32, dropout=0.3), tiny_tokenizer, seed=0)
        data = PackedStream(ids, ids[:200], 32, Layout(4, 1), seed=0)
        sampler = Sampler(cfg, tiny_tokenizer, cfg.run_dir)
        result = train(cfg, model, tiny_tokenizer, data, accelerator=make_accelerator(cfg), evaluators=(sampler,))
        losses[every] = result.losses
    assert (tmp_path / "runs" / "every2" / "samples" / "step-000002.txt").is_file()  # it did sample
    assert losses[2] == losses[1000]
