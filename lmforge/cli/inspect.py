"""``lmforge inspect MODEL --text "..."``: the HTML report of what the model thinks."""

from __future__ import annotations

from lmforge.inspect.report import inspect_text


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model folder, lmforge run folder (uses best/ or model/), LoRA adapter or hub id")
    parser.add_argument("--text", required=True, help="the text to inspect")
    parser.add_argument("--out", default="inspect", help="folder for report.html and the PNGs (default: inspect)")
    parser.add_argument("--top-k", type=int, default=5, help="alternatives shown per position (default: 5)")
    parser.add_argument(
        "--target-position",
        type=int,
        default=-1,
        help="token position whose top prediction is attributed to the inputs (default: the last)",
    )
    parser.add_argument("--no-bos", action="store_true", help="do not put BOS before the text")
    parser.add_argument("--max-tokens", type=int, default=256, help="refuse longer texts (the views grow as T^2)")
    parser.add_argument("--device", default="auto", help="auto (CUDA where present), cpu, cuda, cuda:1, mps")
    parser.add_argument("--trust-remote-code", action="store_true")


def run(args) -> int:
    report, insp = inspect_text(
        args.model,
        args.text,
        args.out,
        top_k=args.top_k,
        target_position=args.target_position,
        add_bos=not args.no_bos,
        max_tokens=args.max_tokens,
        trust_remote_code=args.trust_remote_code,
        device=args.device,
    )
    print(f"mean surprisal {float(insp.surprisal.mean()):.3f} nats/token over {len(insp.ids) - 1} predictions")
    print(f"wrote {report} (and {', '.join(p.name for p in sorted(report.parent.glob('*.png')))})")
    return 0
