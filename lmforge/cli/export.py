"""``lmforge export merge ADAPTER_OR_RUN --out DIR``."""

from __future__ import annotations

import torch

from lmforge.export import merge_adapter

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


def run(args) -> int:
    out = merge_adapter(
        args.adapter, args.out, base=args.base, dtype=DTYPES[args.dtype], trust_remote_code=args.trust_remote_code
    )
    print(f"merged model: {out}  (lmforge generate {out} --prompt ...)")
    return 0
