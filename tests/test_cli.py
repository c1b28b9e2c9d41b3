"""The real CLI on tiny configs: loss falls, outputs load with Hugging Face, bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmforge.cli import COMMANDS, main
from tests.conftest import VERSE


def lmforge(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "lmforge.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_help_lists_commands():
    r = lmforge("--help")
    assert r.returncode == 0
    for name in COMMANDS:
        assert name in r.stdout


@pytest.fixture()
def corpus(tmp_path):
    p = tmp_path / "verse.txt"
    p.write_text(VERSE * 40, encoding="utf-8")
    return p


def _tiny(tmp_path, corpus, *extra):
    return [
        f"data.train={corpus}",
        f"out_dir={tmp_path / 'runs'}",
        f"log_dir={tmp_path / 'logs'}",
        "tokenizer.vocab_size=128",
        "model.preset=tiny",
        "model.context=64",
        "train.batch_size=8",
        "train.lr=3e-3",
        "train.warmup_steps=5",
        "train.log_every=5",
        "sample.max_new_tokens=8",
        *extra,
    ]


def _config(tmp_path, text="name: t\n"):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "setup,expected",
    [
        (lambda d: [f"data.train={d / 'missing.txt'}"], "data file not found"),
        (lambda d: [f"data.train={(d / 'empty.txt').absolute()}"], "the corpus is empty"),
        (lambda d: [f"data.train={d / 'latin1.txt'}"], "latin1.txt:2: not UTF-8"),
        (lambda d: ["train.learnig_rate=1"], "did you mean 'train.lr'"),
        (lambda d: ["train.lr=-0.1"], "config key 'train.lr'"),
        (lambda d: ["model.preset=huge"], "unknown preset 'huge'"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, setup, expected):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "latin1.txt").write_bytes("ok\nd\xe9j\xe0 vu\n".encode("latin-1"))
    r = lmforge("pretrain", _config(tmp_path), f"out_dir={tmp_path / 'runs'}", *setup(tmp_path))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], r.stderr


@pytest.mark.slow
def test_pretrain_cli_loss_falls_and_outputs_load(tmp_path, corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    code = main(
        [
            "pretrain",
            str(_config(tmp_path, "name: poet\n")),
            *_tiny(tmp_path, corpus, "train.max_steps=60", "train.eval_every=20", "train.save_every=20"),
        ]
    )
    assert code == 0
    run = tmp_path / "runs" / "poet"
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    vals = [r["val_loss"] for r in rows if "val_loss" in r]
    assert losses[-1] < losses[0] - 1.0 and vals[-1] < vals[0]
    for f in ("config.yaml", "loss.png", "model/model.safetensors", "best/config.json", "checkpoints/latest"):
        assert (run / f).exists(), f
    assert list((run / "samples").glob("step-*.txt"))
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    tok = AutoTokenizer.from_pretrained(run / "model")
    assert model.config.vocab_size == len(tok) and tok.pad_token_id != tok.eos_token_id

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "logs" / "poet"))
    acc.Reload()
    assert {"train/loss", "eval/val_loss"} <= set(acc.Tags()["scalars"])
    assert len(acc.Scalars("train/loss")) >= 10

    r = lmforge("generate", run, "--prompt", "The sea", "--temperature", "0", "--max-new-tokens", "12")
    assert r.returncode == 0 and r.stdout.startswith("The sea"), r.stderr
    again = lmforge("generate", run, "--prompt", "The sea", "--temperature", "0", "--max-new-tokens", "12")
    assert again.stdout == r.stdout  # greedy is deterministic

    # resume continues from the last checkpoint to a longer schedule
    assert main(["resume", str(run), "train.max_steps=70"]) == 0
    steps = [json.loads(ln).get("step") for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 70


def test_tokenizer_cli(tmp_path, corpus):
    r = lmforge("tokenizer", "train", corpus, "--vocab-size", "120", "--out", tmp_path / "tok")
    assert r.returncode == 0, r.stderr
    assert "characters per token" in r.stdout
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(tmp_path / "tok")) == 120
