"""The extension points docs/architecture.md shows, used as a newcomer would: a metric, an objective,
a user's plain callable by path, and a command module's shape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import METRICS, OBJECTIVES, metric, objective
from lmforge.losses.common import IGNORE, forward_logits, shift
from lmforge.scoring.metrics import aggregate, direction


@metric("char_overlap_test", higher_is_better=True)
def char_overlap(prediction: str, reference: str, **ctx) -> float:
    return len(set(prediction) & set(reference)) / max(len(set(reference)), 1)


@objective("label_smoothed_test")
def label_smoothed(model, batch, reference=None, eps: float = 0.1):
    logits = forward_logits(model, batch)
    lg, lb = shift(logits, batch["labels"])
    loss = F.cross_entropy(
        lg.flatten(0, 1).float(), lb.flatten(), ignore_index=IGNORE, label_smoothing=eps, reduction="sum"
    )
    return loss / batch["num_tokens"], {}


def test_a_registered_metric_is_averaged_and_knows_its_direction():
    got = aggregate(["char_overlap_test"], ["abc", "xyz"], ["abd", "abd"])
    assert got == {"char_overlap_test": pytest.approx((2 / 3 + 0) / 2)}
    assert direction("char_overlap_test") is True and direction("char_overlap_test@json") is True


def test_a_users_metric_by_path_brings_its_declared_direction():
    m = METRICS.get("tests.user_plugins:shouting_ratio")
    assert m.higher_is_better is False and m.fn("AB cd", "") == pytest.approx(0.4)
    with pytest.raises(LmforgeError, match="cannot load metric"):
        METRICS.get("tests.user_plugins:nothing_here")


def test_a_registered_objective_trains_through_the_loop(tmp_path, tiny_tokenizer):
    from lmforge.core.config import ModelConfig, load_config
    from lmforge.data.batches import Layout, PackedStream
    from lmforge.model import build_model
    from lmforge.train.loop import train
    from lmforge.train.run import make_accelerator
    from tests.conftest import VERSE

    cfg = load_config(
        None,
        [
            f"out_dir={tmp_path}",
            "name=ext",
            f"log_dir={tmp_path / 'logs'}",
            "train.precision=fp32",
            "train.objective=label_smoothed_test",
            "train.objective_args={eps: 0.05}",
            "train.max_steps=6",
            "train.warmup_steps=0",
            "train.lr=1e-2",
            "train.eval_every=100",
            "train.save_every=100",
            "train.batch_size=2",
        ],
    )
    ids = torch.tensor(tiny_tokenizer(VERSE * 4, add_special_tokens=False)["input_ids"])
    model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
    res = train(
        cfg, model, tiny_tokenizer, PackedStream(ids, ids[:64], 16, Layout(2, 1), 0), accelerator=make_accelerator(cfg)
    )
    assert res.step == 6 and res.losses[-1] < res.losses[0]
    with pytest.raises(LmforgeError, match="takes no 'beta'; did you mean 'eps'|takes no 'beta'; known: eps"):
        OBJECTIVES.get("label_smoothed_test").bind({"beta": 1.0})


def test_every_command_module_has_the_one_shape():
    import argparse

    from lmforge.cli import COMMANDS, command

    for name, help_ in COMMANDS.items():
        mod = command(name)
        assert isinstance(help_, str) and help_, name
        mod.add_arguments(argparse.ArgumentParser())
        assert callable(mod.run), name
