"""The decoding worker: one thread owns the model; requests that arrive together decode together.

A request becomes a ``Job`` (its prompts' ids, one row per choice, and its settings). The worker takes the
oldest waiting job, waits ``batch_wait_s`` for company, and decodes in one ``generate_ids`` call every waiting
job whose settings decode alike (same temperature, top-p, strategy, schema), up to ``max_batch`` rows. Each
row streams through a ``RowSink``: its text grows token by token, is cut at a stop string, and reaches the
caller as events through ``job.emit`` (called on the worker thread):

    ("token", index, text_delta, (token_id, logprob or None, [(alt_id, alt_logprob), ...]) or None)
    ("done", index, finish_reason)        # "stop" or "length"
    ("error", ServeError)                 # once; the job ends

A job seeded with ``seed`` decodes alone, so its sample does not depend on what else was waiting.
"""

from __future__ import annotations

import itertools
import json
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import torch

from lmforge.core.errors import LmforgeError
from lmforge.data.chat import stop_ids
from lmforge.generate import GenerationSettings, generate_ids
from lmforge.generate.stream import LogprobRecorder, RowStreams


@dataclass
class Limits:
    """What one request may ask for, and how the queue behaves."""

    max_prompt_tokens: int = 2048
    max_tokens: int = 512
    max_n: int = 8
    max_body_bytes: int = 1 << 20
    timeout_s: float = 120.0  # a request's decoding; a client that reads none of its answer this long is cut off
    body_timeout_s: float = 30.0  # a request's headers, then its body, must each arrive within this (408)
    max_queue: int = 256  # jobs waiting or decoding; more get 429
    max_batch: int = 32  # rows decoded together; 1 serves one request at a time
    batch_wait_s: float = 0.005


class ServeError(Exception):
    """An error the client sees as an OpenAI-style body with this HTTP status."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


_unique = itertools.count()


@dataclass
class Job:
    prompts: list[list[int]]  # one row of prompt ids per choice
    settings: GenerationSettings  # max_new_tokens is this job's budget
    emit: Callable[[tuple], None]
    stop: tuple[str, ...] = ()
    top_logprobs: Optional[int] = None  # None: no log-probabilities; 0: the chosen token's only
    deadline: float = float("inf")
    cancelled: threading.Event = field(default_factory=threading.Event)
    failed: bool = False

    def key(self) -> tuple:
        """Jobs with equal keys decode in one batch (one set of processors and warpers for all rows)."""
        s = self.settings
        alone = next(_unique) if s.seed is not None else None
        schema = None if s.json_schema is None else json.dumps(s.json_schema, sort_keys=True)
        budget = s.max_new_tokens if schema is not None else None  # the JSON closing plan is per budget
        return (
            s.temperature if s.temperature > 0 else 0.0,
            s.top_p,
            s.top_k,
            s.strategy,
            s.well_formed,
            schema,
            budget,
            alone,
        )

    def fail(self, err: ServeError) -> None:
        if not self.failed:
            self.failed = True
            self.emit(("error", err))


def hold_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of ``text`` to keep unsent: a partial character (U+FFFD from a cut UTF-8
    sequence), or the start of a stop string that the next tokens may complete."""
    n = len(text) - len(text.rstrip("\ufffd"))
    body = text[: len(text) - n]
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(body)), longest, -1):
            if body.endswith(s[:k]):
                longest = k
                break
    return n + longest


class RowSink:
    """One choice of one job: its text so far, what has been sent, and its end."""

    def __init__(self, job: Job, index: int, tokenizer):
        self.job, self.index, self.tokenizer = job, index, tokenizer
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already sent
        self.closed = False

    def push(self, token_id: int, logprob, alternatives) -> bool:
        job = self.job
        if job.failed or job.cancelled.is_set():
            return self._close(None)
        if time.monotonic() > job.deadline:
            job.fail(ServeError(504, "the request ran past the server's time limit", "timeout_error", code="timeout"))
            return self._close(None)
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        info = (token_id, logprob, alternatives)  # logprob None unless the job asked
        cut = min((text.find(s) for s in job.stop if s and s in text), default=-1)
        if cut >= 0:
            self._send(text[:cut], info)
            job.emit(("done", self.index, "stop"))
            return self._close(None)
        self._send(text[: len(text) - hold_back(text, job.stop)], info)
        return False

    def finish(self, reason: str) -> None:
        if self.closed:
            return
        if not self.job.failed:
            text = self.tokenizer.decode(self.ids, skip_special_tokens=True).rstrip("\ufffd")
            if len(text) > self.sent:
                self._send(text, None)
            self.job.emit(("done", self.index, reason))
        self._close(None)

    def _send(self, upto: str, info) -> None:
        delta = upto[self.sent :] if len(upto) > self.sent else ""
        self.sent = max(self.sent, len(upto))
        if delta or info is not None:
            self.job.emit(("token", self.index, delta, info))

    def _close(self, _) -> bool:
        self.closed = True
        return True


class Engine:
    """Owns the model on one worker thread; ``submit`` queues a job (or refuses it with 429)."""

    def __init__(self, model, tokenizer, limits: Optional[Limits] = None, compile: bool = False):
        self.model, self.tokenizer, self.compile = model, tokenizer, compile
        self.limits = limits or Limits()
        self.stop_token_ids = stop_ids(tokenizer)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self._queue: queue.Queue = queue.Queue()
        self._load = 0  # jobs waiting or decoding
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.batches: list[int] = []  # rows per decoded batch, for tests and the load benchmark
        model.eval()
        self._thread = threading.Thread(target=self._loop, name="lmforge-decoder", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._load >= self.limits.max_queue:
                raise ServeError(429, "the server is busy (request queue full); retry shortly", "rate_limit_error")
            self._load += 1
        self._queue.put(job)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        waiting: list[Job] = []
        while not self._stopping.is_set():
            if not waiting:
                try:
                    waiting.append(self._queue.get(timeout=0.2))
                except queue.Empty:
                    continue
                if self.limits.max_batch > 1 and self.limits.batch_wait_s > 0:
                    time.sleep(self.limits.batch_wait_s)  # let requests sent together arrive together
            while True:
                try:
                    waiting.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            waiting = [j for j in waiting if self._live(j)]
            if not waiting:
                continue
            group = self._group(waiting)
            waiting = [j for j in waiting if all(j is not g for g in group)]
            self._run(group)

    def _live(self, job: Job) -> bool:
        if job.cancelled.is_set() or time.monotonic() > job.deadline:
            job.fail(
                ServeError(504, "the request waited past the server's time limit", "timeout_error", code="timeout")
            )
            self._done(1)
            return False
        return True

    def _group(self, waiting: list[Job]) -> list[Job]:
        first = waiting[0]
        key, rows, group = first.key(), len(first.prompts), [first]
        for job in waiting[1:]:
            if rows + len(job.prompts) > self.limits.max_batch:
                break
            if job.key() == key:
                group.append(job)
                rows += len(job.prompts)
        return group

    def _run(self, group: list[Job]) -> None:
        try:
            settings = group[0].settings
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            ids, sinks, budgets = [], [], []
            for job in group:
                for i, p in enumerate(job.prompts):
                    ids.append(p)
                    sinks.append(RowSink(job, i, self.tokenizer))
                    budgets.append(job.settings.max_new_tokens)
            want = [j.top_logprobs for j in group if j.top_logprobs is not None]
            recorder = LogprobRecorder(enabled=bool(want))
            rows = RowStreams(sinks, recorder, max(want, default=0), self.stop_token_ids, budgets)
            self.batches.append(len(ids))
            batch_settings = GenerationSettings(
                **{**vars(settings), "max_new_tokens": max(budgets), "stop": (), "compile": self.compile}
            )
            generate_ids(self.model, self.tokenizer, ids, batch_settings, max(budgets), [recorder], [rows])
            rows.close()
        except LmforgeError as e:
            for job in group:
                job.fail(ServeError(400, str(e)))
        except Exception as e:  # the server keeps serving; the client gets a one-line error, the log the trace
            traceback.print_exc(file=sys.stderr)
            for job in group:
                job.fail(ServeError(500, f"internal error: {type(e).__name__}", "server_error"))
        finally:
            self._done(len(group))

    def _done(self, n: int) -> None:
        with self._lock:
            self._load -= n
