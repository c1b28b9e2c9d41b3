"""The one loader: a model and its tokenizer from a hub id, a folder, an lmforge run or a LoRA adapter.

Every command that reads a model (generate, eval, inspect, doctor, export, finetune) comes through here:
safetensors only, remote code only when asked, and a one-line error for a missing folder or an
offline hub. Also the atomic writer of a model folder, the mirror image of loading one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch

from lmforge.core.errors import LmforgeError
from lmforge.core.hub import hub_errors, looks_like_hub_id

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")
"""A folder holds a tokenizer when it has one of these (fast, slow SentencePiece, BPE vocabularies)."""


def resolve_model_path(name: str | Path) -> str:
    """An lmforge run folder resolves to its best checkpoint, else its final model; local paths become
    absolute, so an adapter trained on them records a base that loads from any working directory."""
    p = Path(name)
    for sub in ("best", "model"):
        if (p / sub / "config.json").is_file() or (p / sub / "adapter_config.json").is_file():
            return os.path.abspath(p / sub)  # not resolved: best/ is a link that moves to each new best
    return os.path.abspath(p) if p.exists() else str(name)


def resolve_device(name: str = "auto") -> str:
    """``auto`` is CUDA where present, else the CPU; any other name (cpu, cuda:1, mps) as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(adapter: str | Path) -> str:
    """The base named in ``adapter_config.json``; a relative path that is not here is tried beside the adapter."""
    cfg_path = Path(adapter) / "adapter_config.json"
    try:
        base = json.loads(cfg_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except json.JSONDecodeError as e:
        raise LmforgeError(f"{cfg_path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if not base:
        raise LmforgeError(f"{cfg_path}: no base_model_name_or_path; pass --base")
    if not Path(base).is_absolute() and not Path(base).exists() and (Path(adapter) / base).exists():
        return str(Path(adapter) / base)
    if not Path(base).exists() and not looks_like_hub_id(base):
        raise LmforgeError(
            f"{adapter}: the adapter's base model {base} is gone; put it back, or write where it is now as "
            f"base_model_name_or_path in {cfg_path}"
        )
    return base


def load_tokenizer(name_or_path: str | Path, trust_remote_code: bool = False):
    """Any tokenizer ``AutoTokenizer`` can load: an lmforge run, a folder, or a hub id."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    if Path(path).is_dir() and not any((Path(path) / f).is_file() for f in TOKENIZER_FILES):
        raise LmforgeError(
            f"{path}: no tokenizer there (no {' or '.join(TOKENIZER_FILES[:2])}); save the tokenizer it was "
            "trained with into it (AutoTokenizer.from_pretrained(BASE).save_pretrained(FOLDER))"
        )
    with hub_errors(str(name_or_path), "tokenizer"):  # a run folder resolves as its model does
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


def load_pretrained(
    name: str | Path,
    trust_remote_code: bool = False,
    dtype=None,
    attn_implementation=None,
    quantization_config=None,
    base: Optional[str] = None,
):
    """A causal LM from a folder, run, adapter or hub id; safetensors only; remote code only when asked.

    An adapter folder loads its base (``base``, else the one its config names) with the adapter on top,
    embeddings first grown to the adapter's tokenizer (fine-tuning may have added a distinct PAD).
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name)
    if is_adapter(path):
        return _load_adapter(path, base, trust_remote_code, dtype)
    kwargs = dict(trust_remote_code=trust_remote_code, use_safetensors=True)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    with hub_errors(str(name), "model"):
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def _load_adapter(folder: str, base: Optional[str], trust_remote_code: bool, dtype):
    from peft import PeftModel

    model = load_pretrained(base or adapter_base(folder), trust_remote_code, dtype=dtype)
    if (Path(folder) / "tokenizer_config.json").is_file():
        n = len(load_tokenizer(folder, trust_remote_code))
        if model.get_input_embeddings().weight.shape[0] < n:
            model.resize_token_embeddings(n, mean_resizing=False)  # the adapter holds the grown rows
    with hub_errors(folder, "LoRA adapter"):
        return PeftModel.from_pretrained(model, folder)


def load_model_and_tokenizer(
    name: str | Path,
    *,
    trust_remote_code: bool = False,
    device: Optional[str] = None,
    dtype=None,
    base: Optional[str] = None,
    quantization_config=None,
    tokenizer_only_ok: bool = False,
):
    """``(model, tokenizer)`` from a hub id, a model folder, an lmforge run (``best/``, else ``model/``) or a
    LoRA adapter (its tokenizer, or its base's when saved without one). ``device``: move the model there
    (``auto``: CUDA where present). ``quantization_config``: e.g. QLoRA's 4-bit.
    ``tokenizer_only_ok``: a folder with a tokenizer and no model gives
    ``(None, tokenizer)`` instead of an error."""
    path = resolve_model_path(name)
    p = Path(path)
    local = not looks_like_hub_id(str(name)) or Path(name).parent.is_dir()  # runs/typo is a local path
    if not p.exists() and local:
        raise LmforgeError(f"model not found: {name} (no such folder, and not a hub id owner/name)")
    tok_path = path
    if is_adapter(p) and not (p / "tokenizer_config.json").is_file():
        tok_path = base or adapter_base(p)
    tokenizer = load_tokenizer(tok_path, trust_remote_code)
    if p.is_dir() and not any((p / f).is_file() for f in ("config.json", "adapter_config.json")):
        if tokenizer_only_ok:
            return None, tokenizer
        raise LmforgeError(f"{name}: no model there (no config.json or adapter_config.json)")
    model = load_pretrained(path, trust_remote_code, dtype=dtype, base=base, quantization_config=quantization_config)
    if device is not None:
        model = model.to(resolve_device(device))
    return model.eval(), tokenizer


def save_model_folder(model, tokenizer, out: Path) -> None:
    """A standalone model folder (adapter-only for PEFT models) with its tokenizer, written beside ``out``
    and renamed into place: a crash leaves the previous folder."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
