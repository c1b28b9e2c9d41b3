"""The reward a config declares: a weighted sum of named rewards, each component kept for the logs.

rl:
  rewards:
    - {name: rhyme_en, weight: 1.0, args: {scheme: AABB}}
    - {name: fluency, weight: 0.1}
    - {name: mypkg.rewards:brevity, weight: 0.5}   # a TRL reward function runs unchanged
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmforge.core.errors import LmforgeError, did_you_mean
from lmforge.core.registry import REWARDS


def completion_text(completion: Any) -> str:
    """A completion as TRL passes it: plain text, or a conversation (its last message's content)."""
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


@dataclass(frozen=True)
class RewardTerm:
    name: str
    weight: float
    fn: Callable

    @classmethod
    def make(cls, name: str, weight: float = 1.0, args: dict | None = None, label: str | None = None) -> RewardTerm:
        """``label``: the component's name in the sum and the logs (default: the reward's name)."""
        fn = REWARDS.get(name)
        args = dict(args or {})
        params = inspect.signature(fn).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        fixed = ("prompts", "completions")
        named = [p for p in params if p not in fixed and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
        for key in args:
            if key not in params and not (takes_any and not named):
                raise LmforgeError(
                    f"rl.rewards: {name} takes no {key!r}" + (did_you_mean(key, named) if named else "; it takes none")
                )
        bound = functools.partial(fn, **args) if args else fn
        return cls(label or name, float(weight), bound)

    @property
    def needs_reference(self) -> bool:
        return bool(getattr(getattr(self.fn, "func", self.fn), "needs_reference", False))


class Rewards:
    """``rewards(prompts, completions, **columns) -> (total, {name: values})``: one total per completion."""

    def __init__(self, terms: list[RewardTerm]):
        if not terms:
            raise LmforgeError("rl.rewards: declare at least one reward, e.g. [{name: rhyme_en}]")
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise LmforgeError(
                f"rl.rewards: {names} names a reward twice; give each once with its weight, or each its own label"
            )
        self.terms = terms

    @property
    def needs_reference(self) -> bool:
        return any(t.needs_reference for t in self.terms)

    def __call__(self, prompts: list, completions: list, **columns: Any) -> tuple[list[float], dict[str, list[float]]]:
        parts: dict[str, list[float]] = {}
        for t in self.terms:
            values = t.fn(prompts=prompts, completions=completions, **columns)  # keywords, as TRL calls them
            if len(values) != len(completions):
                raise LmforgeError(f"reward {t.name} returned {len(values)} values for {len(completions)} completions")
            # TRL's convention: None means "does not apply"; it counts as 0 in the sum
            parts[t.name] = [float("nan") if v is None else float(v) for v in values]
        total = [
            sum(t.weight * (0.0 if math.isnan(parts[t.name][i]) else parts[t.name][i]) for t in self.terms)
            for i in range(len(completions))
        ]
        return total, parts
