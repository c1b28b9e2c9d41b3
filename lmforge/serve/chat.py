"""A terminal chat over the decoding ``Engine``: the model's chat template, replies streamed as they decode,
and commands typed as lines of their own:

    /reset            forget the conversation (the system prompt stays)
    /temp 0.4         sampling temperature (0: greedy)
    /top_p 0.9        nucleus sampling
    /max 200          the most tokens one reply may take
    /least on|off     least-likely decoding (negated logits)
    /help, /quit
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from lmforge.core.errors import LmforgeError
from lmforge.generate import GenerationSettings
from lmforge.serve.engine import Engine, Job, ServeError
from lmforge.serve.protocol import chat_prompt, prompt_rows

HELP = __doc__.split("\n\n", 1)[1].rstrip()


@dataclass
class ChatSettings:
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    least_likely: bool = False
    seed: Optional[int] = None


def _set(settings: ChatSettings, name: str, value: str) -> str:
    """One ``/name value`` command applied; returns the line to show."""
    try:
        if name == "temp":
            settings.temperature = float(value)
            if not 0 <= settings.temperature <= 2:
                raise ValueError
        elif name == "top_p":
            settings.top_p = float(value)
            if not 0 < settings.top_p <= 1:
                raise ValueError
        elif name == "max":
            settings.max_tokens = int(value)
            if settings.max_tokens < 1:
                raise ValueError
        elif name == "least":
            if value not in ("on", "off"):
                raise ValueError
            settings.least_likely = value == "on"
    except ValueError:
        return f"/{name}: bad value {value!r} (see /help)"
    return f"[{name} = {value}]"


def reply(engine: Engine, messages: list[dict], s: ChatSettings, write: Callable[[str], None]) -> str:
    """The assistant's next turn, each piece passed to ``write`` as it decodes; returns the whole reply."""
    try:
        rows = prompt_rows(
            engine.tokenizer, [chat_prompt(engine.tokenizer, messages)], engine.limits, engine.max_positions
        )
    except ServeError as e:
        raise LmforgeError(e.message) from None
    room = engine.max_positions - len(rows[0]) if engine.max_positions else s.max_tokens
    settings = GenerationSettings(
        max_new_tokens=min(s.max_tokens, room),
        temperature=s.temperature,
        top_p=s.top_p if s.top_p < 1 else None,
        seed=s.seed,
        strategy="least_likely" if s.least_likely else ("greedy" if s.temperature == 0 else "sample"),
    )
    events: queue.Queue = queue.Queue()
    engine.submit(Job(prompts=rows, settings=settings, emit=events.put))
    pieces = []
    while True:
        ev = events.get()
        if ev[0] == "error":
            raise LmforgeError(ev[1].message)
        if ev[0] == "done":
            return "".join(pieces)
        if ev[2]:
            pieces.append(ev[2])
            write(ev[2])


def chat_loop(
    engine: Engine,
    read: Callable[[], str],
    write: Callable[[str], None],
    settings: ChatSettings,
    system: Optional[str] = None,
) -> list[dict]:
    """Reads lines until end of input or /quit; returns the conversation."""
    if not getattr(engine.tokenizer, "chat_template", None):
        raise LmforgeError(
            "this model's tokenizer has no chat template (a chat fine-tune sets one: data.chat_template); "
            "lmforge generate MODEL --prompt ... completes plain text"
        )
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    while True:
        try:
            line = read()
        except EOFError:
            return messages
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            name, _, value = text[1:].partition(" ")
            if name in ("quit", "exit"):
                return messages
            if name == "reset":
                messages = list(start)
                write("[conversation reset]\n")
            elif name == "help":
                write(HELP + "\n")
            elif name in ("temp", "top_p", "max", "least"):
                write(_set(settings, name, value.strip()) + "\n")
            else:
                write(f"unknown command /{name} (see /help)\n")
            continue
        messages.append({"role": "user", "content": line})
        answer = reply(engine, messages, settings, write)
        write("\n")
        messages.append({"role": "assistant", "content": answer})
