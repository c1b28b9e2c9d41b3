"""Checkpoints under faults: one copy of the weights, damaged files found and passed over on resume, a full
disk stopping the run with one line and the previous checkpoint intact, NaN/inf in the loss or a gradient."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge.cli import main
from lmforge.core.config import ModelConfig
from lmforge.core.errors import LmforgeError
from lmforge.model import build_model
from lmforge.train import checkpoint as ckpt
from lmforge.train.loop import train
from lmforge.train.run import make_accelerator
from tests.conftest import VERSE
from tests.test_train_invariants import _cfg, _stream


def _pretrain_args(tmp_path: Path, name: str, *extra: str) -> list[str]:
    text = tmp_path / "verse.txt"
    if not text.is_file():
        text.write_text(VERSE * 20, encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 0\n", encoding="utf-8")
    return [
        "pretrain",
        str(cfg),
        f"name={name}",
        f"data.train={text}",
        f"out_dir={tmp_path / 'runs'}",
        f"log_dir={tmp_path / 'logs'}",
        "model.preset=tiny",
        "model.context=32",
        "tokenizer.vocab_size=128",
        "train.batch_size=2",
        "train.precision=fp32",
        "train.lr_scheduler=constant",  # a shorter first run takes the same steps as the longer one
        "train.warmup_steps=0",
        "train.save_every=2",
        "train.keep_last=5",
        "train.eval_every=100",
        "train.report_to=none",
        "sample.max_new_tokens=2",
        *extra,
    ]


def _weights(run: Path) -> dict:
    return load_file(run / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    assert main(_pretrain_args(tmp, "full", "train.max_steps=6")) == 0
    return tmp / "runs" / "full"


def test_a_checkpoint_holds_the_weights_once(uninterrupted):
    step = uninterrupted / "checkpoints" / "step-000006"
    weights = (step / "model" / "model.safetensors").stat().st_size
    tensors = sorted(p.relative_to(step).as_posix() for p in step.rglob("*.safetensors"))
    assert tensors == ["model/model.safetensors", "optimizer.safetensors", "rng.safetensors"]
    total = sum(p.stat().st_size for p in step.rglob("*") if p.is_file())
    # weights + AdamW's two moments (2x) + tokenizer, state and manifest: no second copy of the weights
    assert 3 * weights < total < 3 * weights + 200_000
    manifest = json.loads((step / "manifest.json").read_text())["files"]
    assert set(manifest) == {p.relative_to(step).as_posix() for p in step.rglob("*") if p.is_file()} - {"manifest.json"}
    assert ckpt.damage(step) is None


@pytest.mark.parametrize("fault", ["truncated", "bit flipped", "missing"])
def test_a_damaged_latest_checkpoint_is_passed_over_and_the_resumed_run_is_exact(
    tmp_path, uninterrupted, capsys, fault
):
    assert main(_pretrain_args(tmp_path, "cut", "train.max_steps=4")) == 0
    bad = tmp_path / "runs" / "cut" / "checkpoints" / "step-000004" / "model" / "model.safetensors"
    data = bytearray(bad.read_bytes())
    if fault == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif fault == "bit flipped":  # same size: only the checksum can tell
        data[len(data) - 100] ^= 0x10
        bad.write_bytes(bytes(data))
    else:
        bad.unlink()
    capsys.readouterr()
    assert main(["resume", str(tmp_path / "runs" / "cut"), "train.max_steps=6"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "damaged" in line]
    assert len(warning) == 1 and "step-000004" in warning[0] and "model/model.safetensors" in warning[0]
    out = capsys.readouterr().out + err
    assert "resumed from" not in out or "step-000002" in out
    full, cut = _weights(uninterrupted), _weights(tmp_path / "runs" / "cut")
    assert full.keys() == cut.keys()
    for k in full:
        assert torch.equal(full[k], cut[k]), k  # steps 3-6 retrained from step 2: bit-identical


def test_every_checkpoint_damaged_is_one_line_not_a_traceback(tmp_path, capsys):
    assert main(_pretrain_args(tmp_path, "cut", "train.max_steps=4")) == 0
    for step in (tmp_path / "runs" / "cut" / "checkpoints").glob("step-*"):
        (step / "optimizer.safetensors").write_bytes(b"\0" * 10)
    assert main(["resume", str(tmp_path / "runs" / "cut"), "train.max_steps=6"]) == 2
    assert "every checkpoint in" in capsys.readouterr().err


def test_a_checkpoint_from_before_manifests_still_resumes(tmp_path, uninterrupted):
    assert main(_pretrain_args(tmp_path, "old", "train.max_steps=4")) == 0
    step = tmp_path / "runs" / "old" / "checkpoints" / "step-000004"
    (step / "manifest.json").unlink()  # written as an earlier lmforge did
    assert ckpt.damage(step) is None
    (step / "rng.safetensors").rename(step / "rng.bak")  # and one of its files lost: found without a manifest
    assert ckpt.damage(step) == "no rng.safetensors"
    (step / "rng.bak").rename(step / "rng.safetensors")
    assert main(["resume", str(tmp_path / "runs" / "old"), "train.max_steps=6"]) == 0
    assert all(torch.equal(a, b) for a, b in zip(_weights(uninterrupted).values(), _weights(step.parents[1]).values()))


CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from lmforge.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_full_disk_stops_with_one_line_and_leaves_no_partial_checkpoint(tmp_path):
    # a 600 kB file-size limit: the tiny model's weights (~0.4 MB) fit, AdamW's state (~0.9 MB) does not
    args = _pretrain_args(tmp_path, "full", "train.max_steps=2")
    proc = subprocess.run([sys.executable, "-c", CHILD, "600000", *args], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.strip()][-1]
    assert "disk full writing" in line and "MiB free" in line and "lmforge resume" in line
    ckdir = tmp_path / "runs" / "full" / "checkpoints"
    assert not list(ckdir.glob(".tmp-*")) and not (ckdir / "latest").exists()


def test_a_full_disk_at_the_second_checkpoint_keeps_the_first(tmp_path, tiny_tokenizer, monkeypatch):
    cfg = _cfg(tmp_path, "enospc", batch_size=4, max_steps=6, save_every=2)
    model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
    real, calls = ckpt.save_file, []

    def save_file(tensors, path, *a, **k):
        calls.append(path)
        if len(calls) == 3:  # optimizer, rng of step 2; then the optimizer state of step 4
            raise OSError(28, "No space left on device", str(path))
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(ckpt, "save_file", save_file)
    with pytest.raises(LmforgeError, match=r"disk full writing .*optimizer.safetensors"):
        train(cfg, model, tiny_tokenizer, _stream(tiny_tokenizer), accelerator=make_accelerator(cfg))
    ckdir = cfg.run_dir / "checkpoints"
    assert (ckdir / "latest").read_text().strip() == "step-000002"
    assert sorted(p.name for p in ckdir.iterdir()) == ["latest", "step-000002"]
    assert ckpt.damage(ckdir / "step-000002") is None


class _Poison:
    """A batch source that makes step ``at`` non-finite: the logits (loss) become NaN, or one gradient becomes
    ``value`` (NaN or infinity) everywhere."""

    def __init__(self, data, model, at: int, where: str, value: float = float("nan")):
        self.data, self.at, self.where, self.model, self.step = data, at, where, model, -1
        head = model.lm_head
        head.register_forward_hook(lambda m, i, out: out * float("nan") if self._now("loss") else None)
        model.model.norm.weight.register_hook(lambda g: torch.full_like(g, value) if self._now("grad") else None)

    def _now(self, where):
        return self.where == where and self.step == self.at and self.model.training

    def train_step(self, step):
        self.step = step
        self.snapshots = getattr(self, "snapshots", {})
        self.snapshots[step] = torch.cat([p.detach().flatten().clone() for p in self.model.parameters()])
        return self.data.train_step(step)

    def val_batches(self, n):
        return self.data.val_batches(n)


NONFINITE = [("loss", "nan", "loss became nan"), ("grad", "nan", "gradient norm became nan")]
NONFINITE += [("grad", "inf", "gradient norm became inf")]


@pytest.mark.parametrize("where, value, what", NONFINITE)
def test_nonfinite_loss_or_gradient_stops_naming_the_step(tmp_path, tiny_tokenizer, where, value, what):
    cfg = _cfg(tmp_path, where, batch_size=4, max_steps=6, save_every=2)
    model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
    data = _Poison(_stream(tiny_tokenizer), model, at=3, where=where, value=float(value))
    with pytest.raises(LmforgeError, match=f"{what} at step 3; stopped without saving it"):
        train(cfg, model, tiny_tokenizer, data, accelerator=make_accelerator(cfg))
    assert (cfg.run_dir / "checkpoints" / "latest").read_text().strip() == "step-000002"
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step changed nothing


@pytest.mark.parametrize("where, value", [(w, v) for w, v, _ in NONFINITE])
def test_skip_nonfinite_skips_the_bad_step_without_an_update(tmp_path, tiny_tokenizer, where, value):
    cfg = _cfg(tmp_path, where, batch_size=4, max_steps=6, save_every=2, skip_nonfinite=1)
    model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
    data = _Poison(_stream(tiny_tokenizer), model, at=3, where=where, value=float(value))
    res = train(cfg, model, tiny_tokenizer, data, accelerator=make_accelerator(cfg))
    assert res.step == 6 and len(res.losses) == 5  # one step skipped, the run finished
    assert all(torch.isfinite(p).all() for p in model.parameters())
    state = json.loads((cfg.run_dir / "checkpoints" / "step-000006" / "state.json").read_text())
    assert state["skipped"] == 1
    assert torch.equal(data.snapshots[3], data.snapshots[4])  # the skipped step updated nothing
    assert not torch.equal(data.snapshots[4], data.snapshots[5])  # the next one did


def test_killed_between_the_last_checkpoint_and_the_model_save_resumes_to_the_trained_model(tmp_path, uninterrupted):
    # a kill after checkpoints/step-6 was written but before model/ was: resume has nothing to train, and must
    # still save the trained weights (it saved the untrained model)
    assert main(_pretrain_args(tmp_path, "late", "train.max_steps=6")) == 0
    run = tmp_path / "runs" / "late"
    import shutil

    shutil.rmtree(run / "model")
    assert main(["resume", str(run)]) == 0
    full, late = _weights(uninterrupted), _weights(run)
    assert all(torch.equal(full[k], late[k]) for k in full)


def test_a_full_disk_while_writing_best_keeps_the_previous_best(tmp_path, tiny_tokenizer, monkeypatch):
    cfg = _cfg(tmp_path, "bestfull", batch_size=4, max_steps=6, eval_every=2, save_every=100)
    model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
    real, calls = ckpt.save_model_folder, []

    def save_model_folder(m, tok, out):
        calls.append(out)
        if len(calls) == 2:  # the second best: half written, then the disk is full
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.mkdir()
            (tmp / "model.safetensors").write_bytes(b"\0" * 100)
            raise OSError(28, "No space left on device", str(tmp / "model.safetensors"))
        return real(m, tok, out)

    monkeypatch.setattr(ckpt, "save_model_folder", save_model_folder)
    with pytest.raises(LmforgeError, match="disk full writing"):
        train(cfg, model, tiny_tokenizer, _stream(tiny_tokenizer), accelerator=make_accelerator(cfg))
    best = cfg.run_dir / "best"
    assert best.is_symlink() and best.resolve().name == ".best-step-000002"
    assert (best / "model.safetensors").is_file() and (best / "tokenizer.json").is_file()
    assert not [p for p in cfg.run_dir.iterdir() if p.name.endswith(".tmp")]
