"""``lmforge export merge ADAPTER_OR_RUN --out DIR`` and ``lmforge export gguf RUN --out FILE.gguf``."""

from __future__ import annotations

import torch

from lmforge.export import export_gguf, merge_adapter
from lmforge.export.gguf import TYPES
from lmforge.export.gguf_vocab import KNOWN_PRE

DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    m = sub.add_parser("merge", help="merge a LoRA adapter into its base model (PEFT merge_and_unload)")
    m.add_argument("adapter", help="an adapter folder or an lmforge run (its best/ adapter, else model/)")
    m.add_argument("--out", required=True, help="folder for the merged model and its tokenizer")
    m.add_argument("--base", help="the base model (default: base_model_name_or_path in adapter_config.json)")
    m.add_argument(
        "--dtype",
        default="auto",
        choices=list(DTYPES),
        help="weights dtype of the merged model (auto: the base's; QLoRA bases load unquantized)",
    )
    m.add_argument("--trust-remote-code", action="store_true")
    g = sub.add_parser("gguf", help="one GGUF file for llama.cpp (a LoRA run is merged first)")
    g.add_argument("model", help="an lmforge run, a model or adapter folder, or a hub id (Llama architecture)")
    g.add_argument("--out", required=True, help="the .gguf file to write")
    g.add_argument("--type", default="f16", choices=list(TYPES), help="weights: f16 (default), q8_0 or f32")
    g.add_argument("--base", help="an adapter's base model (default: the one its adapter_config.json names)")
    g.add_argument(
        "--pre",
        choices=list(KNOWN_PRE),
        help="llama.cpp's pre-tokenizer, where the tokenizer's own split regex is none it knows (text may split "
        "differently)",
    )
    g.add_argument("--trust-remote-code", action="store_true")


def run(args) -> int:
    if args.action == "gguf":
        out = export_gguf(
            args.model, args.out, args.type, base=args.base, pre=args.pre, trust_remote_code=args.trust_remote_code
        )
        size = out.stat().st_size / 2**20
        print(f"GGUF ({args.type}, {size:.1f} MiB): {out}  (llama-cli -m {out} -p ...)")
        return 0
    out = merge_adapter(
        args.adapter, args.out, base=args.base, dtype=DTYPES[args.dtype], trust_remote_code=args.trust_remote_code
    )
    print(f"merged model: {out}  (lmforge generate {out} --prompt ...)")
    return 0
