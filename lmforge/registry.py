"""One small registry for objectives, rewards, metrics, formats and tasks.

A name is either registered here (``@OBJECTIVES.register("causal_lm")``) or a user path
``"package.module:function"`` that is imported on demand.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable

from .errors import LmforgeError


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str, **attrs: Any) -> Callable:
        def deco(obj):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            for k, v in attrs.items():
                setattr(obj, k, v)
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Any:
        if name in self._items:
            return self._items[name]
        if ":" in name:
            mod, _, attr = name.partition(":")
            try:
                return getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError) as e:
                raise LmforgeError(f"cannot load {self.kind} {name!r}: {e}") from None
        hint = difflib.get_close_matches(name, self._items, n=1)
        msg = f"unknown {self.kind} {name!r}"
        msg += f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(sorted(self._items))}"
        raise LmforgeError(msg)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items


OBJECTIVES = Registry("objective")
REWARDS = Registry("reward")
METRICS = Registry("metric")
FORMATS = Registry("data format")
TASKS = Registry("task")
