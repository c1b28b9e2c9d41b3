"""A wall-clock limit on one trial (``budget.trial_timeout_s``): a timer signal stops the trial where it is.

A trial runs in the sweep's own process (its training loop, its evaluations), so the limit is SIGALRM: when
it fires, ``TrialTimeout`` is raised in the main thread at the next Python instruction, whatever the trial
was doing (a step, an evaluation, a hang in Python code or a sleep). While the trial reports to the study
(``held``) the signal waits until the report is written, so the database never sees half a write.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

from lmforge.core.errors import LmforgeError


class TrialTimeout(BaseException):
    """The trial ran past its limit. A BaseException, as KeyboardInterrupt: no ``except Exception`` on the way
    (a tracker, a reader) swallows it, and the loop's KeyboardInterrupt handler does not save a checkpoint."""


class Deadline:
    """``with Deadline(seconds):`` raises TrialTimeout in the block once ``seconds`` have passed (None: never)."""

    def __init__(self, seconds: Optional[float]):
        self.seconds, self.expired, self._held, self._old = seconds, False, False, None

    def __enter__(self) -> Deadline:
        if not self.seconds:
            return self
        if not hasattr(signal, "setitimer"):
            raise LmforgeError("budget.trial_timeout_s needs a timer signal (SIGALRM), which this system lacks")
        if threading.current_thread() is not threading.main_thread():
            raise LmforgeError("budget.trial_timeout_s: run the sweep in the main thread (the limit is a signal)")
        self._old = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc) -> None:
        if self.seconds:
            self._held = True  # a signal arriving from here on stops nothing: the block is over
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)

    def _fire(self, signum, frame) -> None:
        self.expired = True
        if not self._held:
            raise TrialTimeout(self.message)

    @property
    def message(self) -> str:
        return f"ran past budget.trial_timeout_s={self.seconds:g}"

    @contextmanager
    def held(self) -> Iterator[None]:
        """The signal waits while the block runs; the trial stops after it if the time ran out meanwhile."""
        self._held = True
        try:
            yield
        finally:
            self._held = False
        if self.expired:
            raise TrialTimeout(self.message)
