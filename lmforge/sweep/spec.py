"""The sweep file: a base config, a metric and its direction, a budget, and a search space over dotted keys.

    name: shakespeare-lr              # the sweep folder, runs/<name> (default: the file's name)
    config: recipes/shakespeare-cpu.yaml
    set: {train.max_time_s: null, train.max_steps: 300, train.eval_every: 50}   # every trial
    metric: val_nats_per_char         # direction: from the metric's declaration unless given
    budget: {n_trials: 12, timeout_s: 2400, trial_timeout_s: 600}
    sampler: tpe                      # tpe | random | grid
    pruner: median                    # median | hyperband | none
    space:
      train.lr: {low: 3.0e-4, high: 1.0e-2, log: true}
      train.batch_size: {choices: [16, 32, 64]}
      lora.alpha: {low: 8, high: 64, when: {lora.method: lora}}   # sampled only when lora.method is lora

Every key (``set``, ``space``, ``when``) is checked against the config schema, and every value the space can
take against its field, before any trial starts.
"""

from __future__ import annotations

import copy
import math
import typing
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmforge.core.config import RunConfig, apply_override, load_config, suggest_key
from lmforge.core.errors import LmforgeError, printable
from lmforge.core.yamlio import read_yaml
from lmforge.scoring.metrics import direction


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Strict):
    """One searched key: a range (``low``..``high``, ``log``, ``step``) or ``choices``; ``when``: a condition."""

    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[list[Any]] = None
    when: dict[str, Any] = {}
    """Sample this key only when each named key (searched earlier, or the base config's) has this value (or
    one of a list of values)."""

    @model_validator(mode="after")
    def _shape(self):
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("give either low and high, or choices")
        if self.choices is not None and not self.choices:
            raise ValueError("choices is empty")
        if self.choices is not None and (self.low is not None or self.high is not None):
            raise ValueError("give either low and high, or choices")
        if any(x is not None and not math.isfinite(x) for x in (self.low, self.high, self.step)):
            raise ValueError("low, high and step must be finite numbers")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step ({self.step}) must be above 0")
        if self.low is not None and self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("a log range takes no step")
        return self


class Pruner(_Strict):
    type: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = Field(3, ge=0)
    """median: trials that run to the end before any is pruned."""
    warmup_steps: int = Field(0, ge=0)
    """median: training steps before a trial may be pruned."""
    min_steps: Optional[int] = Field(None, ge=1)
    """hyperband: the smallest training budget a trial gets (default: train.eval_every)."""
    reduction_factor: int = Field(3, ge=2)


class Budget(_Strict):
    n_trials: Optional[int] = Field(None, ge=1)
    """Trials that end (complete, pruned or failed in training) over the whole study, every process counted."""
    timeout_s: Optional[float] = Field(None, gt=0)
    """Wall-clock seconds for this process's share; a trial under way finishes."""
    trial_timeout_s: Optional[float] = Field(None, gt=0)
    """Wall-clock seconds one trial may take (start-up and evaluations included): past it the trial is stopped,
    recorded as pruned at its last evaluation (failed if it made none), and the sweep goes on."""


class Sweep(_Strict):
    name: str
    config: str
    """The base config (a recipe), relative to the current folder as the recipes' data paths are."""
    set: dict[str, Any] = {}
    metric: str = "val_loss"
    direction: Optional[Literal["minimize", "maximize"]] = None
    budget: Budget
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Pruner = Pruner()
    baseline: bool = False
    """Queue the base config's own values of the searched keys as the first trial: the table then shows what
    the search beat."""
    seed: Optional[int] = None
    """The sampler's seed; unset, each process draws its own (processes sharing a study then differ)."""
    space: dict[str, Param]

    @model_validator(mode="before")
    @classmethod
    def _pruner_name(cls, v: Any) -> Any:
        if isinstance(v, dict) and isinstance(v.get("pruner"), str):
            v = {**v, "pruner": {"type": v["pruner"]}}
        if isinstance(v, dict) and v.get("pruner") is None and "pruner" in v:
            v = {**v, "pruner": {"type": "none"}}
        return v


def load_sweep(path: str | Path) -> tuple[Sweep, dict, RunConfig]:
    """The sweep, the base config's tree (``set`` applied) and that config validated; every key checked."""
    p = Path(path)
    if not p.is_file():
        raise LmforgeError(f"sweep file not found: {p}")
    raw = read_yaml(p) or {}
    if not isinstance(raw, dict):
        raise LmforgeError(f"{p}: a sweep file is a mapping (config, metric, budget, space)")
    raw.setdefault("name", p.stem)
    try:
        sweep = Sweep.model_validate(raw)
    except ValidationError as err:
        e = err.errors()[0]
        loc = printable(".".join(str(x) for x in e["loc"]))
        raise LmforgeError(f"{p}: {loc}: {printable(e['msg'])}") from None
    if not sweep.space:
        raise LmforgeError(f"{p}: space is empty: name at least one config key to search")
    if sweep.budget.n_trials is None and sweep.budget.timeout_s is None:
        raise LmforgeError(f"{p}: budget: set n_trials, timeout_s or both")
    for where, keys in (("set", sweep.set), ("space", sweep.space)):
        for key in keys:
            check_key(key, f"{p}: {where}")
    for key, param in sweep.space.items():
        for cond in param.when:
            check_key(cond, f"{p}: space: {key}: when")
    if sweep.sampler == "grid":
        for key, param in sweep.space.items():
            if param.when:
                raise LmforgeError(f"{p}: space: {key}: the grid sampler takes no conditional keys; use tpe or random")
            if param.choices is None and (param.step is None or param.log):
                raise LmforgeError(f"{p}: space: {key}: the grid sampler needs choices, or low, high and step")
    base = _base_tree(sweep, p)
    cfg = _validate(base, f"{p}: set")
    for key, param in sweep.space.items():
        for value in _extremes(key, param):
            tree = copy.deepcopy(base)
            apply_override(tree, key, value)
            _validate(tree, f"{p}: space: {key}={value!r}")
    if sweep.direction is None:
        d = direction(sweep.metric)
        if d is None:
            raise LmforgeError(
                f"{p}: metric {sweep.metric!r} declares no direction: set direction: minimize or maximize"
            )
        sweep.direction = "maximize" if d else "minimize"
    return sweep, base, cfg


def check_key(dotted: str, where: str) -> None:
    """A one-line error unless ``dotted`` names a config key (or a key inside a mapping field such as
    ``train.objective_args``), with the nearest key suggested."""
    node: Any = RunConfig
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = getattr(node, "model_fields", None)
        if fields is None or part not in fields:
            hint = suggest_key(dotted)
            raise LmforgeError(
                f"{where}: {dotted!r} is not a config key" + (f"; did you mean {hint!r}?" if hint else "")
            )
        node = _section(fields[part].annotation)
        if node is None:  # a value: only a mapping field has keys below it
            if i < len(parts) - 1 and typing.get_origin(fields[part].annotation) is not dict:
                raise LmforgeError(f"{where}: {'.'.join(parts[: i + 1])!r} is a value, not a section")
            return


def field_type(dotted: str) -> Optional[type]:
    """int or float for a numeric config field (Optional[...] too), else None."""
    node: Any = RunConfig
    ann = None
    for part in dotted.split("."):
        fields = getattr(node, "model_fields", None)
        if fields is None or part not in fields:
            return None
        ann = fields[part].annotation
        node = _section(ann)
    # Optional[int] and Union[Literal["auto"], int] are int fields too
    args = [a for a in typing.get_args(ann) if a is not type(None) and typing.get_origin(a) is not Literal] or [ann]
    return args[0] if len(args) == 1 and args[0] in (int, float) else None


def is_int(key: str, param: Param) -> bool:
    """A range samples integers for an int field, or for a key outside the schema given integer bounds."""
    kind = field_type(key)
    if kind is not None:
        return kind is int
    return all(
        float(x).is_integer() for x in (param.low, param.high, param.step or 1)
    )  # int has no is_integer before 3.12


def config_value(cfg: RunConfig, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
    return node


def _section(ann: Any) -> Optional[type]:
    args = [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
    found = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return found[0] if found else None


def _extremes(key: str, param: Param) -> list[Any]:
    if param.choices is not None:
        return list(param.choices)
    if is_int(key, param):
        return [int(param.low), int(param.high)]
    return [float(param.low), float(param.high)]


def _base_tree(sweep: Sweep, path: Path) -> dict:
    cfg_path = Path(sweep.config)
    if not cfg_path.is_file():
        raise LmforgeError(f"{path}: config: file not found: {cfg_path} (relative to the current folder)")
    tree = read_yaml(cfg_path) or {}
    if not isinstance(tree, dict):
        raise LmforgeError(f"{cfg_path}: a config is a mapping of sections")
    for key, value in sweep.set.items():
        apply_override(tree, key, value)
    return tree


def _validate(tree: dict, where: str) -> RunConfig:
    try:
        return load_config(None, base=copy.deepcopy(tree))
    except LmforgeError as e:
        raise LmforgeError(f"{where}: {str(e).removeprefix('config: ')}") from None
