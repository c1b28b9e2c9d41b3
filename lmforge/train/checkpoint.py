"""Checkpoints: atomic, resumable, safetensors only (no pickle is ever loaded).

``checkpoints/step-000100/`` holds ``model/`` (a Hugging Face folder: loads with from_pretrained,
or an adapter folder for LoRA), ``optimizer.safetensors`` + ``rng.safetensors`` (tensors),
``state.json`` (step, scheduler, optimizer hyper-parameters, best metric) and ``manifest.json`` (each
file's size and SHA-256). The weights are written once: resume reads them back from ``model/``. A
checkpoint is written into a temporary folder and renamed into place, then ``checkpoints/latest`` is
replaced atomically: a crash while saving leaves the previous checkpoint and ``latest`` untouched. A
checkpoint whose files do not match its manifest is skipped on resume for the one before it, with a
warning; a full disk stops the run with a one-line error and leaves the previous checkpoint as it was.

``best/`` is a relative symlink to ``.best-step-N/``: the new best is written whole beside the old one,
then the link is replaced in one ``os.replace``, so ``best`` always names a complete folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
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


def save_best(model, tokenizer, run_dir: Path, step: int, heads: Optional[dict] = None) -> Path:
    """Writes ``.best-step-N/`` (with the heads, as ``model/`` has them) then points ``best`` at it atomically;
    removes the previous best folder."""
    link = run_dir / "best"
    target = run_dir / f".best-step-{step:06d}"
    with disk_full_is_an_error(target.with_name(f".{target.name}.tmp"), run_dir):
        save_model_folder(model, tokenizer, target)
        if heads:
            save_heads(heads, target / HEADS)
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
    run_dir: Path,
    step: int,
    model,
    tokenizer,
    optimizer,
    scheduler,
    extra: dict,
    keep_last: int,
    heads: Optional[dict] = None,
    data_state: Optional[list] = None,
) -> Path:
    """Writes checkpoints/step-N atomically, points ``latest`` at it, prunes all but the last ``keep_last``.
    ``heads`` (modules trained beside the model) go to ``heads.safetensors``; ``data_state`` (the batch
    source's state, one entry per process: the replay buffer of rollouts) to ``data.json``."""
    ckdir = run_dir / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    final = ckdir / f"step-{step:06d}"
    tmp = ckdir / f".tmp-step-{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    with disk_full_is_an_error(tmp, ckdir):
        tmp.mkdir()
        model.save_pretrained(tmp / "model", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "model")
        opt_tensors, opt_meta = _optimizer_tensors(optimizer.state_dict())
        save_file(opt_tensors, tmp / "optimizer.safetensors")
        save_file(_rng_state(), tmp / "rng.safetensors")
        if heads:
            save_heads(heads, tmp / HEADS)
        if data_state is not None:  # compact: a replay buffer holds token ids by the thousand
            (tmp / "data.json").write_text(json.dumps(data_state, separators=(",", ":")), encoding="utf-8")
        state = {"step": step, "optimizer": opt_meta, "scheduler": scheduler.state_dict(), **extra}
        (tmp / "state.json").write_text(json.dumps(state, indent=1, default=float), encoding="utf-8")
        write_manifest(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(ckdir / "latest", final.name + "\n")
    _prune(ckdir, keep_last, keep=final.name)
    return final


class disk_full_is_an_error:
    """Turns "no space left" (or a file-size limit) while writing ``tmp`` into a one-line error naming the path
    and the free space; the partly written ``tmp`` is removed, so what was there before stays as it was."""

    CODES = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

    def __init__(self, tmp: Path, where: Path):
        self.tmp, self.where = tmp, where

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None:
            return False
        full = isinstance(exc, OSError) and exc.errno in self.CODES
        # safetensors (Rust) reports the same condition as its own error type with the OS message inside
        full = full or any(m in str(exc) for m in ("No space left", "File too large", "Disk quota"))
        if not full:
            return False
        shutil.rmtree(self.tmp, ignore_errors=True)
        try:
            free = f"{shutil.disk_usage(self.where).free / 2**20:,.0f} MiB free"
        except OSError:
            free = "free space unknown"
        raise LmforgeError(
            f"disk full writing {getattr(exc, 'filename', None) or self.tmp} ({free} on that disk); "
            f"nothing earlier in {self.where} was changed: free space and run `lmforge resume`"
        ) from None


MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """Each file's size and SHA-256, written last (fsynced), so a checkpoint can later prove itself whole."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    atomic_write_text(folder / MANIFEST, json.dumps({"files": entries}, indent=1))


def damage(folder: Path) -> Optional[str]:
    """What is wrong with a checkpoint folder (a missing, truncated or altered file), or None if it is whole.
    A checkpoint from before manifests needs its state.json and weights only."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        for name in ("state.json", "optimizer.safetensors", "rng.safetensors"):
            if not (folder / name).is_file():
                return f"no {name}"
        return None if (folder / "trainable.safetensors").is_file() or (folder / "model").is_dir() else "no weights"
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"{MANIFEST} is unreadable"
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {want['bytes']} were written"
        if _sha256(path) != want["sha256"]:
            return f"{name} does not match its checksum"
    return None


def _prune(ckdir: Path, keep_last: int, keep: str) -> None:
    steps = sorted(d for d in ckdir.glob("step-*") if d.is_dir())
    for d in steps[:-keep_last]:
        if d.name != keep:
            shutil.rmtree(d, ignore_errors=True)


def latest_checkpoint(run_dir: Path, verify: bool = False) -> Optional[Path]:
    """The checkpoint to resume from: the one ``latest`` names, else the newest complete one. With ``verify``,
    a damaged checkpoint is passed over for the one before it, with a warning naming it and what is wrong."""
    ckdir = run_dir / "checkpoints"
    pointer = ckdir / "latest"
    named = None
    if pointer.is_file():
        cand = ckdir / pointer.read_text(encoding="utf-8").strip()
        if (cand / "state.json").is_file():
            named = cand
    complete = sorted((d for d in ckdir.glob("step-*") if (d / "state.json").is_file()), reverse=True)
    order = ([named] if named else []) + [d for d in complete if d != named]
    if not verify:
        return order[0] if order else None
    for cand in order:
        problem = damage(cand)
        if problem is None:
            return cand
        print(f"warning: checkpoint {cand} is damaged ({problem}); trying the one before it", file=sys.stderr)
    if order:
        raise LmforgeError(f"every checkpoint in {ckdir} is damaged (see the warnings above); nothing to resume from")
    return None


def load_checkpoint(path: Path, model, optimizer, scheduler, heads: Optional[dict] = None) -> dict:
    """Restores the weights (from ``model/``), heads, optimizer, scheduler and RNG; returns state.json."""
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    _load_weights(path, model)
    load_heads(path, heads)
    opt = _optimizer_state(load_file(path / "optimizer.safetensors"), state["optimizer"])
    optimizer.load_state_dict(opt)
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(load_file(path / "rng.safetensors"))
    return state


def restore_weights(path: Path, model, heads: Optional[dict] = None) -> dict:
    """The weights (and heads) and RNG only, for a resume that finds a stage (or the whole run) already finished:
    the next stage starts its own optimizer and schedule, as it did in the uninterrupted run. Returns state.json."""
    _load_weights(path, model)
    load_heads(path, heads)
    _set_rng_state(load_file(path / "rng.safetensors"))
    return json.loads((path / "state.json").read_text(encoding="utf-8"))


HEADS = "heads.safetensors"


def save_heads(heads: dict, path: Path) -> None:
    """Each head's tensors as ``<name>.<key>`` in one safetensors file, written beside and renamed into place."""
    tensors = {
        f"{name}.{k}": v.detach().contiguous().cpu() for name, h in heads.items() for k, v in h.state_dict().items()
    }
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, tmp)
    os.replace(tmp, path)


def load_heads(path: Path, heads: Optional[dict]) -> None:
    """The heads saved in checkpoint ``path``; a checkpoint with heads the run lacks (or without those it has)
    belongs to another configuration: a one-line error, not the optimizer's mismatch."""
    file = path / HEADS
    if not heads:
        if file.is_file():
            raise LmforgeError(f"{path}: this checkpoint trained a head (rl.log_z: learned); resume with that setting")
        return
    if not file.is_file():
        raise LmforgeError(f"{path}: no {HEADS} (it was written without rl.log_z: learned); resume with that setting")
    saved = load_file(file)
    for name, h in heads.items():
        mine = {k[len(name) + 1 :]: v for k, v in saved.items() if k.startswith(name + ".")}
        try:
            h.load_state_dict(mine)
        except RuntimeError as e:
            raise LmforgeError(f"{file}: {name} does not match this run's ({str(e).splitlines()[0]})") from None


def load_data_state(path: Path) -> Optional[list]:
    """The batch source's saved state (one entry per process), or None when the checkpoint has none."""
    file = path / "data.json"
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


def _load_weights(path: Path, model) -> None:
    """The trained weights back into ``model``: an adapter through PEFT's own loader, a full model by name from
    its safetensors shards; checkpoints from before manifests kept a ``trainable.safetensors`` copy."""
    folder = path / "model"
    if (path / "trainable.safetensors").is_file():
        weights = load_file(path / "trainable.safetensors")
    elif (folder / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))
        if result.unexpected_keys:
            raise LmforgeError(
                f"{path}: checkpoint does not match the model (unknown parameter {result.unexpected_keys[0]})"
            )
        return
    else:
        weights = {}
        for shard in sorted(folder.glob("*.safetensors")):
            weights.update(load_file(shard))
    params = dict(model.named_parameters())
    unknown = [n for n in weights if n not in params and n not in model.state_dict()]
    if unknown:
        raise LmforgeError(f"{path}: checkpoint does not match the model (unknown parameter {unknown[0]})")
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing:
        raise LmforgeError(f"{path}: checkpoint does not hold the trained parameter {missing[0]}")
    with torch.no_grad():
        for n, t in weights.items():
            if n in params:
                params[n].copy_(t)


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
