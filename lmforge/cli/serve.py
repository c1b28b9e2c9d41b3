"""``lmforge serve MODEL [--host 127.0.0.1] [--port 8000] [--api-key KEY]``: an OpenAI-compatible server.

The key may come from ``LMFORGE_API_KEY`` instead (kept out of the process list); clients send it as
``Authorization: Bearer KEY``. Without one, anyone who can reach the port may use the model, so the server
binds to 127.0.0.1 unless ``--host`` says otherwise."""

from __future__ import annotations

import os
import sys

from lmforge.generate.precision import CHOICES, COMPILE_HELP, DTYPE_HELP
from lmforge.serve import Limits, serve


def add_arguments(p) -> None:
    d = Limits()
    p.add_argument("model", help="an lmforge run (runs/NAME), a model folder, a LoRA adapter, or a hub id")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("LMFORGE_API_KEY"), help="require this key (or LMFORGE_API_KEY)")
    p.add_argument("--name", help="the model id clients send (default: the folder's or run's name, or the hub id)")
    p.add_argument("--device", default="auto", help="auto (CUDA where present), cpu, cuda, cuda:1, mps")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="rows decoded together; 1 turns batching off")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens, help="the most tokens one answer may ask for")
    p.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens)
    p.add_argument("--max-n", type=int, default=d.max_n, help="the most choices one request may ask for")
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="requests waiting or decoding; more get 429")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes)
    p.add_argument("--timeout", type=float, default=d.timeout_s, help="seconds one request may take")
    p.add_argument(
        "--body-timeout", type=float, default=d.body_timeout_s, help="seconds a client may take to send its request"
    )
    p.add_argument("--dtype", default="auto", choices=CHOICES, help=DTYPE_HELP)
    p.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    p.add_argument("--threads", type=int, help="CPU threads for decoding (default: torch's; 1 suits small models)")
    p.add_argument("--trust-remote-code", action="store_true")


def run(args) -> int:
    limits = Limits(
        max_prompt_tokens=args.max_prompt_tokens,
        max_tokens=args.max_tokens,
        max_n=args.max_n,
        max_body_bytes=args.max_body_bytes,
        timeout_s=args.timeout,
        body_timeout_s=args.body_timeout,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(
            f"lmforge serve: listening on {args.host} without an API key: anyone who can reach it may use it",
            file=sys.stderr,
        )
    serve(
        args.model,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        name=args.name,
        device=args.device,
        limits=limits,
        trust_remote_code=args.trust_remote_code,
        threads=args.threads,
        dtype=args.dtype,
        compile=args.compile,
    )
    return 0
