"""OpenAI response bodies from the worker's events: whole (``completion_body``) or as stream chunks (``chunk``).

Streamed and whole answers are built from the same events by the same ``Choices.take``, so the streamed text
is the whole text, piece by piece.
"""

from __future__ import annotations

from typing import Optional


class Choices:
    """The choices of one request as they grow: text, log-probabilities, finish reasons."""

    def __init__(self, tokenizer, n: int, top_logprobs: Optional[int], kind: str, prompt_chars: list[int]):
        self.tokenizer, self.n, self.top, self.kind = tokenizer, n, top_logprobs, kind
        self.text = [""] * n
        self.tokens = [0] * n
        self.logprobs: list[list[dict]] = [[] for _ in range(n)]
        self.finish: list[Optional[str]] = [None] * n
        self.offset = list(prompt_chars)  # completions' text_offset counts from the prompt's start

    def all_done(self) -> bool:
        return all(f is not None for f in self.finish)

    def take(self, ev: tuple) -> Optional[tuple]:
        """Applies one event; returns ``(index, delta, logprobs, finish_reason)`` for a stream chunk, or None."""
        if ev[0] == "done":
            _, i, reason = ev
            self.finish[i] = reason
            return i, self._delta(""), None, reason
        _, i, text, info = ev
        entries = []
        if info is not None:
            self.tokens[i] += 1
            if self.top is not None:
                entries = [self._entry(i, *info)]
                self.logprobs[i] += entries
        if not text and not entries:
            return None
        self.text[i] += text
        return i, self._delta(text), self._logprobs(entries) if self.top is not None else None, None

    def _delta(self, text: str):
        return text if self.kind == "text_completion" else {"content": text}

    def _entry(self, i: int, token_id: int, logprob: float, alternatives) -> dict:
        token = self.tokenizer.decode([token_id])
        alts = [(self.tokenizer.decode([a]), lp) for a, lp in alternatives[: self.top]]
        entry = {
            "token": token,
            "logprob": logprob,
            "bytes": list(token.encode()),
            "top_logprobs": alts,
            "offset": self.offset[i],
        }
        self.offset[i] += len(token)
        return entry

    def _logprobs(self, entries: list[dict]) -> dict:
        if self.kind == "text_completion":
            return {
                "tokens": [e["token"] for e in entries],
                "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [dict(e["top_logprobs"]) for e in entries],
                "text_offset": [e["offset"] for e in entries],
            }
        return {
            "content": [
                {
                    "token": e["token"],
                    "logprob": e["logprob"],
                    "bytes": e["bytes"],
                    "top_logprobs": [
                        {"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in e["top_logprobs"]
                    ],
                }
                for e in entries
            ]
        }

    def usage(self, usage: dict) -> dict:
        done = sum(self.tokens)
        return {**usage, "completion_tokens": done, "total_tokens": usage["prompt_tokens"] + done}


def chunk(meta: dict, kind: str, index, delta, logprobs, finish) -> dict:
    """One server-sent event's body."""
    obj = "text_completion" if kind == "text_completion" else "chat.completion.chunk"
    choices = []
    if index is not None:
        c = {"index": index, "logprobs": logprobs, "finish_reason": finish}
        c["text" if kind == "text_completion" else "delta"] = delta
        choices.append(c)
    return {**meta, "object": obj, "choices": choices}


def completion_body(c: Choices, meta: dict, usage: dict) -> dict:
    choices = []
    for i in range(c.n):
        lp = c._logprobs(c.logprobs[i]) if c.top is not None else None
        if c.kind == "text_completion":
            choices.append({"index": i, "text": c.text[i], "logprobs": lp, "finish_reason": c.finish[i]})
        else:
            message = {"role": "assistant", "content": c.text[i]}
            choices.append({"index": i, "message": message, "logprobs": lp, "finish_reason": c.finish[i]})
    return {**meta, "object": c.kind, "choices": choices, "usage": c.usage(usage)}
