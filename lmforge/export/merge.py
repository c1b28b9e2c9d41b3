"""A LoRA adapter merged into its base: one standalone folder (``lmforge export merge ADAPTER_OR_RUN --out DIR``).

The merged folder loads with ``AutoModelForCausalLM.from_pretrained`` alone (no PEFT), so llama.cpp,
vLLM and any Hugging Face tool can use it. An adapter folder also loads unmerged with
``peft.PeftModel.from_pretrained(base, adapter)``; merging only removes the extra matmuls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lmforge.core.errors import LmforgeError
from lmforge.model.load import load_model_and_tokenizer, save_model_folder


def find_adapter(path: str | Path) -> Path:
    """The adapter folder of ``path``: itself, or a run's ``best/`` (chosen by metric), else its ``model/``."""
    p = Path(path)
    for cand in (p, p / "best", p / "model"):
        if (cand / "adapter_config.json").is_file():
            return cand
    if not p.exists():
        raise LmforgeError(f"adapter not found: {p}")
    if (p / "config.json").is_file() or (p / "model" / "config.json").is_file():
        raise LmforgeError(f"{p} is a full model, not a LoRA adapter: it needs no merge")
    raise LmforgeError(f"{p}: no adapter_config.json (not a LoRA adapter folder or lmforge run)")


def merge_adapter(
    adapter: str | Path, out: str | Path, base: Optional[str] = None, dtype=None, trust_remote_code: bool = False
) -> Path:
    """Merges the adapter into its base and writes a standalone model folder + tokenizer; returns ``out``."""
    out = Path(out)
    folder = find_adapter(adapter)
    if (out / "adapter_config.json").is_file() or out.resolve() == folder.resolve():
        raise LmforgeError(f"--out {out}: would overwrite the adapter; choose another folder")
    merged, tokenizer = merged_model(folder, base=base, dtype=dtype, trust_remote_code=trust_remote_code)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model_folder(merged, tokenizer, out)
    return out


def merged_model(path: str | Path, base: Optional[str] = None, dtype=None, trust_remote_code: bool = False):
    """``(model, tokenizer)`` of a model, run or adapter, with any LoRA adapter merged into its base in memory."""
    model, tokenizer = load_model_and_tokenizer(path, base=base, dtype=dtype, trust_remote_code=trust_remote_code)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()  # W <- W + (alpha/r) B A, adapters removed
        model.config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer
