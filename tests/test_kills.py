"""SIGKILL at random moments of real CLI runs (pretrain, LoRA fine-tune, a two-stage fine-tune), then
`lmforge resume`: what the kill leaves is whole, and the finished run equals an uninterrupted one bit for bit.
The soak (hundreds of kills) is benchmarks/soak.py; this is its fast part."""

from __future__ import annotations

import random

import pytest

from tests.kills import KINDS, base_model, kill_and_resume, reference

pytestmark = pytest.mark.slow
KILLS = {"pretrain": 2, "lora": 2, "stages": 1, "rl": 1}  # the soak does hundreds


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return base_model(tmp_path_factory.mktemp("base"))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, base, kind):
    ref = reference(KINDS[kind], tmp_path / "ref", base)
    assert len(ref.losses) >= 10 and ref.first_step_s > 0
    rng = random.Random(kind)
    for i in range(KILLS[kind]):
        out = kill_and_resume(KINDS[kind], tmp_path / f"kill{i}", base, ref, rng)
        assert out.problems == [], out
        assert out.left != "finished before the kill", out  # the kill is timed from the run's own log
        assert out.losses_equal and out.weights_equal, out
