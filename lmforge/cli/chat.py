"""``lmforge chat MODEL [--temperature 0.7] [--system TEXT]``: talk to a model in the terminal.

The conversation goes through the model's chat template; replies stream as they decode. Type ``/help`` for
the commands (``/reset``, ``/temp 0.4``, ``/top_p 0.9``, ``/max 200``, ``/least on``, ``/quit``)."""

from __future__ import annotations

import sys

from lmforge.generate.precision import CHOICES, DTYPE_HELP
from lmforge.serve import Limits, load_engine
from lmforge.serve.chat import ChatSettings, chat_loop


def add_arguments(p) -> None:
    p.add_argument("model", help="an lmforge run (runs/NAME), a model folder, a LoRA adapter, or a hub id")
    p.add_argument("--system", help="a system prompt, kept across /reset")
    p.add_argument("--temperature", type=float, default=0.7, help="0 means greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=256, help="the most tokens one reply may take")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto", help="auto (CUDA where present), cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="auto", choices=CHOICES, help=DTYPE_HELP)
    p.add_argument("--trust-remote-code", action="store_true")


def run(args) -> int:
    engine = load_engine(
        args.model,
        device=args.device,
        limits=Limits(max_tokens=args.max_tokens),
        trust_remote_code=args.trust_remote_code,
        dtype=args.dtype,
    )
    settings = ChatSettings(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed)
    tty = sys.stdin.isatty()
    if tty:
        print("chatting with", args.model, "- /help for commands, /quit or Ctrl-D to leave")

    def read() -> str:
        return input("you> " if tty else "")

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        chat_loop(engine, read, write, settings, system=args.system)
    finally:
        engine.close()
    return 0
