"""Registries of the things lmforge can be extended with: objectives, metrics, rewards, formats, tasks.

Each entry is a small declared object (``Objective``, ``Metric``) or a plain callable, registered in one
line by a decorator beside its definition::

    @objective("causal_lm")
    def causal_lm(model, batch, reference=None): ...

    @metric("rouge1", higher_is_better=True)
    def rouge1(prediction, reference, **ctx): ...

A name is either registered or a user path ``"package.module:function"``, imported on demand; a user's
plain callable declares the same things as attributes (``fn.higher_is_better = False``,
``fn.needs_reference = True``), read once, when it is turned into the declared object.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from lmforge.core.errors import LmforgeError, did_you_mean


@dataclass(frozen=True)
class Objective:
    """A training objective: ``fn(model, batch, reference, **objective_args) -> (loss, metrics)``.

    ``needs_reference``: the loop must pass the frozen reference model; ``needs_tokenizer``: ``fn`` takes a
    ``tokenizer`` keyword (e.g. for the well-formed token mask)."""

    name: str
    fn: Callable
    needs_reference: bool = False
    needs_tokenizer: bool = False

    def options(self) -> list[str]:
        """The ``train.objective_args`` this objective takes."""
        fixed = ("model", "batch", "reference", "tokenizer")
        return [p for p in inspect.signature(self.fn).parameters if p not in fixed]

    def bind(self, args: dict, tokenizer=None) -> Callable:
        """``fn(model, batch, reference)`` with ``objective_args`` (and the tokenizer, if asked) bound."""
        accepted = self.options()
        for key in args:
            if key not in accepted:
                raise LmforgeError(
                    f"train.objective_args: {self.name} takes no {key!r}"
                    + (did_you_mean(key, accepted) if accepted else "; it takes none")
                )
        kwargs = dict(args)
        if self.needs_tokenizer:
            kwargs["tokenizer"] = tokenizer
        return functools.partial(self.fn, **kwargs) if kwargs else self.fn


@dataclass(frozen=True)
class Metric:
    """A score of one prediction against its reference, ``fn(prediction, reference, **ctx) -> float``,
    averaged over examples; ``fn`` is None for a metric computed over whole texts (perplexity), declared
    here for its direction only. ``corpus(predictions, references, **ctx) -> float``, where given, is the
    metric over a whole set instead of the mean (distinct n-grams across samples, rhyming pairs pooled);
    ``needs_reference`` False: a measure of the prediction alone (a task's rows may then be prompts only);
    ``higher_is_better`` None: a measure with no better direction (syllables per line)."""

    name: str
    fn: Optional[Callable]
    higher_is_better: Optional[bool] = True
    corpus: Optional[Callable] = None
    needs_reference: bool = True


def _as_objective(name: str, obj: Any) -> Objective:
    if isinstance(obj, Objective):
        return obj
    return Objective(
        name, obj, bool(getattr(obj, "needs_reference", False)), bool(getattr(obj, "needs_tokenizer", False))
    )


def _as_metric(name: str, obj: Any) -> Metric:
    if isinstance(obj, Metric):
        return obj
    return Metric(name, obj, bool(getattr(obj, "higher_is_better", True)))


class Registry:
    """Name -> entry; ``wrap(name, user_object)`` turns a user's plain callable into the declared entry."""

    def __init__(self, kind: str, wrap: Callable[[str, Any], Any] = lambda name, obj: obj):
        self.kind = kind
        self.wrap = wrap
        self._items: dict[str, Any] = {}

    def add(self, name: str, entry: Any) -> Any:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = entry
        return entry

    def register(self, name: str) -> Callable:
        """Decorator: registers a plain callable (a format, a task factory, a reward) under ``name``."""

        def deco(obj):
            self.add(name, obj)
            return obj

        return deco

    def get(self, name: str) -> Any:
        if name in self._items:
            return self._items[name]
        if ":" in name:
            mod, _, attr = name.partition(":")
            try:
                return self.wrap(name, getattr(importlib.import_module(mod), attr))
            except (ImportError, AttributeError) as e:
                raise LmforgeError(f"cannot load {self.kind} {name!r}: {e}") from None
        raise LmforgeError(f"unknown {self.kind} {name!r}" + did_you_mean(name, self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


OBJECTIVES = Registry("objective", _as_objective)
METRICS = Registry("metric", _as_metric)
REWARDS = Registry("reward")
FORMATS = Registry("data format")
TASKS = Registry("task")


def objective(name: str, *, needs_reference: bool = False, needs_tokenizer: bool = False) -> Callable:
    """Registers ``fn`` as the objective ``name``; returns ``fn`` unchanged."""

    def deco(fn):
        OBJECTIVES.add(name, Objective(name, fn, needs_reference, needs_tokenizer))
        return fn

    return deco


def metric(
    name: str,
    *,
    higher_is_better: Optional[bool] = True,
    corpus: Optional[Callable] = None,
    needs_reference: bool = True,
) -> Callable:
    """Registers ``fn`` as the per-example metric ``name`` (``corpus``: its value over a whole set, see
    ``Metric``); returns ``fn`` unchanged."""

    def deco(fn):
        METRICS.add(name, Metric(name, fn, higher_is_better, corpus, needs_reference))
        return fn

    return deco
