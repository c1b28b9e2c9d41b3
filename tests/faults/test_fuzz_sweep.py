"""Generated sweep files (``lmforge sweep SWEEP.yaml``) through ``load_sweep``, which checks every key and the
extremes of every range against the config: a sweep, or one line naming the file; never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from fuzzing import any_bytes, budget, garbled, outcome, texts, weighted
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_config import DOTTED, RAW

from lmforge.sweep.spec import load_sweep

BASE = "name: base\nmodel: {preset: tiny}\ndata: {train: corpus.txt}\ntrain: {max_steps: 10}\n"
NUMERIC = ["train.lr", "train.batch_size", "train.max_steps", "train.warmup_steps", "model.num_layers", "seed"]
odd_numbers = st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e300, -1, 0, 0.5, 2**70, 3])
numbers = weighted((4, st.floats(-10, 1000)), (4, st.integers(-5, 500)), (1, odd_numbers), (1, st.one_of(texts)))
extra = st.fixed_dictionaries(
    {},
    optional={
        "log": st.booleans(),
        "step": weighted((3, st.none()), (1, numbers)),
        "when": st.dictionaries(st.sampled_from(NUMERIC + ["train.lr_scheduler", "x.y"]), numbers, max_size=1),
    },
)
choices = st.lists(st.one_of(numbers, texts, st.sampled_from(["cosine", "wsd", "auto"])), max_size=3)
param = weighted(
    (
        4,
        st.builds(
            lambda lo, span, e: {"low": lo, "high": lo + span, **e}, st.integers(0, 50), st.integers(1, 50), extra
        ),
    ),
    (3, st.builds(lambda c, e: {"choices": c, **e}, choices, extra)),
    (2, st.fixed_dictionaries({}, optional={"low": numbers, "high": numbers, "choices": choices})),
)
keys = weighted((4, st.sampled_from(NUMERIC)), (2, st.sampled_from(DOTTED)), (1, texts))


def good_or_odd(good, odd_values=numbers):
    return weighted((6, good), (1, odd_values))


sweep = st.fixed_dictionaries(
    {
        "config": st.just("base.yaml"),
        "space": st.dictionaries(keys, param, min_size=1, max_size=3),
        "budget": good_or_odd(st.fixed_dictionaries({"n_trials": st.integers(1, 5)}), st.dictionaries(texts, numbers)),
    },
    optional={
        "name": texts,
        "set": st.dictionaries(keys, st.one_of(numbers, texts, st.sampled_from(RAW[:20])), max_size=2),
        "metric": good_or_odd(
            st.sampled_from(["val_loss", "json_em", "rouge1"]), st.sampled_from(["nope", "perplexity"])
        ),
        "direction": good_or_odd(st.sampled_from(["minimize", "maximize"]), st.just("up")),
        "sampler": good_or_odd(st.sampled_from(["tpe", "random", "grid"]), st.just("cmaes")),
        "pruner": good_or_odd(st.sampled_from(["median", "hyperband", "none", None]), st.dictionaries(texts, numbers)),
        "baseline": st.booleans(),
        "seed": good_or_odd(st.integers(0, 100)),
    },
)


def _dump(tree: dict) -> bytes:
    return yaml.safe_dump(tree, allow_unicode=True).encode("utf-8", "surrogatepass")


sweep_files = weighted((6, sweep.map(_dump)), (1, garbled(sweep.map(yaml.safe_dump))), (1, any_bytes))


@budget(100)
@given(sweep_files)
def test_sweep_file(data):
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "base.yaml").write_text(BASE)
        p = Path(d) / "sweep.yaml"
        p.write_bytes(data)
        cwd = Path.cwd()
        try:  # a sweep's config path is relative to the current folder
            import os

            os.chdir(d)
            outcome("sweep YAML", load_sweep, p, names=(str(p), "base.yaml"))
        finally:
            os.chdir(cwd)
