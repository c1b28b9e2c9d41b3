"""``lmforge export merge ADAPTER_OR_RUN --out DIR``: a LoRA adapter merged into its base, one standalone folder.

The merged folder loads with ``AutoModelForCausalLM.from_pretrained`` alone (no PEFT), so llama.cpp,
vLLM and any Hugging Face tool can use it. An adapter folder also loads unmerged with
``peft.PeftModel.from_pretrained(base, adapter)``; merging only removes the extra matmuls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from .errors import LmforgeError

DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    m = sub.add_parser("merge", help="merge a LoRA adapter into its base model (PEFT merge_and_unload)")
    m.add_argument("adapter", help="an adapter folder or an lmforge run (its best/ adapter, else model/)")
    m.add_argument("--out", required=True, help="folder for the merged model and its tokenizer")
    m.add_argument("--base", help="the base model (default: base_model_name_or_path in adapter_config.json)")
    m.add_argument("--dtype", default="auto", choices=list(DTYPES),
                   help="weights dtype of the merged model (auto: the base's; QLoRA bases load unquantized)")
    m.add_argument("--trust-remote-code", action="store_true")


def run(args) -> int:
    out = merge_adapter(args.adapter, args.out, base=args.base, dtype=DTYPES[args.dtype],
                        trust_remote_code=args.trust_remote_code)
    print(f"merged model: {out}  (lmforge generate {out} --prompt ...)")
    return 0


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


def base_of(adapter: Path) -> str:
    """The base named in ``adapter_config.json``; a relative path that is not here is tried beside the adapter."""
    cfg_path = adapter / "adapter_config.json"
    try:
        base = json.loads(cfg_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except json.JSONDecodeError as e:
        raise LmforgeError(f"{cfg_path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if not base:
        raise LmforgeError(f"{cfg_path}: no base_model_name_or_path; pass --base")
    if not Path(base).is_absolute() and not Path(base).exists() and (adapter / base).exists():
        return str(adapter / base)
    return base


def load_unmerged(adapter: str | Path, base: Optional[str] = None, dtype=None, trust_remote_code: bool = False):
    """``(PeftModel, tokenizer)``: the base (embeddings grown to the adapter's tokenizer) with the adapter on top."""
    from peft import PeftModel

    from .hub import hub_errors
    from .model import load_pretrained
    from .tokenizer import load_tokenizer

    folder = find_adapter(adapter)
    tokenizer = load_tokenizer(folder, trust_remote_code)
    model = load_pretrained(base or base_of(folder), trust_remote_code, dtype=dtype)
    # fine-tuning may have added a distinct PAD (the PAD rule): the adapter then holds the grown embeddings
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with hub_errors(str(folder), "LoRA adapter"):
        peft_model = PeftModel.from_pretrained(model, str(folder))
    return peft_model, tokenizer


def merge_adapter(adapter: str | Path, out: str | Path, base: Optional[str] = None, dtype=None,
                  trust_remote_code: bool = False) -> Path:
    """Merges the adapter into its base and writes a standalone model folder + tokenizer; returns ``out``."""
    from .train.checkpoint import save_model_folder

    out = Path(out)
    if (out / "adapter_config.json").is_file() or out.resolve() == find_adapter(adapter).resolve():
        raise LmforgeError(f"--out {out}: would overwrite the adapter; choose another folder")
    peft_model, tokenizer = load_unmerged(adapter, base, dtype, trust_remote_code)
    merged = peft_model.merge_and_unload()  # W <- W + (alpha/r) B A, adapters removed
    merged.config.pad_token_id = tokenizer.pad_token_id
    if merged.generation_config is not None:
        merged.generation_config.pad_token_id = tokenizer.pad_token_id
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model_folder(merged, tokenizer, out)
    return out
