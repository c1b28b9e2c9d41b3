"""Checkpoints: atomic, resumable, safetensors only (no pickle is ever loaded).

``checkpoints/step-000100/`` holds ``model/`` (a Hugging Face folder: loads with from_pretrained,
or an adapter folder for LoRA), ``trainable.safetensors`` + ``optimizer.safetensors`` (tensors) and
``state.json`` (step, scheduler, optimizer hyper-parameters, best metric). A checkpoint is written
into a temporary folder and renamed into place, then ``checkpoints/latest`` is replaced atomically:
a crash while saving leaves the previous checkpoint and ``latest`` untouched.

``best/`` is a relative symlink to ``.best-step-N/``: the new best is written whole beside the old one,
then the link is replaced in one ``os.replace``, so ``best`` always names a complete folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

from lmforge.core.errors import LmforgeError
from lmforge.model.load import save_model_folder


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_best(model, tokenizer, run_dir: Path, step: int) -> Path:
    """Writes ``.best-step-N/`` then points ``best`` at it atomically; removes the previous best folder."""
    link = run_dir / "best"
    target = run_dir / f".best-step-{step:06d}"
    save_model_folder(model, tokenizer, target)
    if link.is_dir() and not link.is_symlink():  # a run from before best/ was a link: move it aside once
        os.replace(link, run_dir / ".best-previous")
    old = os.readlink(link) if link.is_symlink() else None
    tmp = run_dir / ".best.link.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp)
    os.replace(tmp, link)
    for stale in [run_dir / ".best-previous"] + ([run_dir / old] if old and old != target.name else []):
        shutil.rmtree(stale, ignore_errors=True)
    return link


def _optimizer_tensors(opt_state: dict) -> tuple[dict, dict]:
    """Splits a torch optimizer state_dict into flat tensors and JSON-able rest."""
    tensors, meta = {}, {"param_groups": opt_state["param_groups"], "state": {}}
    for idx, st in opt_state["state"].items():
        meta["state"][str(idx)] = {}
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                meta["state"][str(idx)][k] = v
    return tensors, meta


def _optimizer_state(tensors: dict, meta: dict) -> dict:
    state: dict = {int(i): dict(v) for i, v in meta["state"].items()}
    for key, t in tensors.items():
        idx, _, name = key.partition(".")
        state.setdefault(int(idx), {})[name] = t
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, extra: dict, keep_last: int
) -> Path:
    """Writes checkpoints/step-N atomically, points ``latest`` at it, prunes all but the last ``keep_last``."""
    ckdir = run_dir / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    final = ckdir / f"step-{step:06d}"
    tmp = ckdir / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp / "model", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "model")
    trainable = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    save_file(trainable, tmp / "trainable.safetensors")
    opt_tensors, opt_meta = _optimizer_tensors(optimizer.state_dict())
    save_file(opt_tensors, tmp / "optimizer.safetensors")
    save_file(_rng_state(), tmp / "rng.safetensors")
    state = {"step": step, "optimizer": opt_meta, "scheduler": scheduler.state_dict(), **extra}
    (tmp / "state.json").write_text(json.dumps(state, indent=1, default=float), encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(ckdir / "latest", final.name + "\n")
    _prune(ckdir, keep_last, keep=final.name)
    return final


def _prune(ckdir: Path, keep_last: int, keep: str) -> None:
    steps = sorted(d for d in ckdir.glob("step-*") if d.is_dir())
    for d in steps[:-keep_last]:
        if d.name != keep:
            shutil.rmtree(d, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    ckdir = run_dir / "checkpoints"
    pointer = ckdir / "latest"
    if pointer.is_file():
        cand = ckdir / pointer.read_text(encoding="utf-8").strip()
        if (cand / "state.json").is_file():
            return cand
    complete = sorted(d for d in ckdir.glob("step-*") if (d / "state.json").is_file())
    return complete[-1] if complete else None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    """Restores trainable weights, optimizer, scheduler and RNG; returns state.json."""
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    weights = load_file(path / "trainable.safetensors")
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise LmforgeError(f"{path}: checkpoint does not match the model (unknown parameter {missing[0]})")
    with torch.no_grad():
        for n, t in weights.items():
            params[n].copy_(t)
    opt = _optimizer_state(load_file(path / "optimizer.safetensors"), state["optimizer"])
    optimizer.load_state_dict(opt)
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(load_file(path / "rng.safetensors"))
    return state


def _rng_state() -> dict[str, torch.Tensor]:
    """The CPU generator's state, and each CUDA device's where CUDA is in use (dropout draws from it)."""
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda:{i}"] = st
    return out


def _set_rng_state(saved: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(saved["cpu"])
    cuda = [saved[k] for k in sorted(k for k in saved if k.startswith("cuda:"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
