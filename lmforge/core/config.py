"""Typed configuration: the same names in YAML, Python and ``key=value`` CLI overrides.

Unknown keys fail with a suggestion; the resolved config is saved with every run.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ValidationError

from lmforge.core import habits
from lmforge.core.errors import LmforgeError
from lmforge.core.schema import (  # noqa: F401  (the sections are imported from here throughout)
    DataConfig,
    LoraConfig,
    ModelConfig,
    RunConfig,
    SampleConfig,
    Section,
    SourceConfig,
    StageConfig,
    TokenizerConfig,
    TrainConfig,
)
from lmforge.core.yamlio import Loader, read_yaml

# What each command would silently ignore, and why: a value set there (not the default) is refused.
UNUSED = {
    "pretrain": {
        "model.base": "starting from a pretrained model is `lmforge finetune`",
        "lora": "adapters are for fine-tuning a base: `lmforge finetune`",
        "stages": "multi-stage runs are fine-tuning runs: `lmforge finetune`",
        "data.template": "pretraining reads plain text",
        "data.completion_only": "pretraining has no prompts to mask",
        "data.group_by_length": "pretraining packs text into full blocks",
        "data.packing": "pretraining packs text into full blocks already",
        "data.chat_template": "pretraining reads plain text",
        "data.assistant_turns": "pretraining reads plain text",
        "train.eval_task": "tasks are scored on fine-tuning validation rows",
        "train.eval_constrained": "tasks are scored on fine-tuning validation rows",
        "train.eval_max_new_tokens": "tasks are scored on fine-tuning validation rows",
        "rl": "training with rewards is `lmforge rl`",
    },
    "finetune": {
        "tokenizer": "fine-tuning keeps the base model's tokenizer",
        "rl": "training with rewards is `lmforge rl`",
        **{
            f"model.{k}": "fine-tuning keeps the base model's architecture"
            for k in (
                "preset",
                "hidden_size",
                "num_layers",
                "num_heads",
                "num_kv_heads",
                "intermediate_size",
                "rope_theta",
                "tie_embeddings",
                "dropout",
            )
        },
    },
}

# lmforge rl fine-tunes a base as finetune does; its algorithm chooses the objective
UNUSED["rl"] = {
    **{k: v for k, v in UNUSED["finetune"].items() if k != "rl"},
    "stages": "an RL run has one stage",
    "train.objective": "rl.algorithm chooses the objective",
    "train.objective_args": "the rl section holds the algorithm's settings",
    "train.epochs": "rollouts have no epochs: set train.max_steps",
}


def _value_and_default(cfg: BaseModel, dotted: str) -> tuple[Any, Any]:
    node, default = cfg, type(cfg)()
    for key in dotted.split("."):
        node, default = getattr(node, key), getattr(default, key)
    return node, default


def set_keys(value: Any, default: Any, prefix: str) -> list[str]:
    """The dotted keys under ``prefix`` whose value differs from the default."""
    if isinstance(value, BaseModel) and isinstance(default, BaseModel):
        return [
            k
            for name in type(value).model_fields
            for k in set_keys(getattr(value, name), getattr(default, name), f"{prefix}.{name}")
        ]
    return [] if value == default else [prefix]


def reject_unused(cfg: RunConfig, command: str) -> None:
    """One line naming the first key that ``command`` would ignore although it is set."""
    for section, why in UNUSED.get(command, {}).items():
        keys = set_keys(*_value_and_default(cfg, section), section)
        if keys:
            raise LmforgeError(f"{command} does not use {keys[0]} ({why}); remove it from the config")


def _parse_value(text: str) -> Any:
    """``key=value`` values are YAML scalars: 3e-4, true, null, [a, b] all work."""
    try:
        value = yaml.load(text, Loader=Loader)  # dates stay text; a SafeLoader: no Python objects
    except Exception:  # not YAML PyYAML can read (a bad date, an empty !!float...): the text itself
        return text
    # "### Question..." parses as a YAML comment (None): only an explicit null means null
    if value is None and text.strip() not in ("", "null", "~", "Null", "NULL"):
        return text
    return value


def apply_override(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise LmforgeError(f"override {dotted!r}: {k!r} is not a section")
    node[keys[-1]] = value


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _known_keys(ann, prefix + name + ".")
    return out


# Model-shape and step names (nanoGPT, HF configs) suggested first, since string similarity misses them; the
# fine-tuning tools' key names are read (not just suggested) by lmforge/core/habits.py.
ALIASES = {
    "block_size": "context",
    "seq_len": "context",
    "n_layer": "num_layers",
    "num_hidden_layers": "num_layers",
    "n_head": "num_heads",
    "n_embd": "hidden_size",
    "use_rslora": "rslora",
    "warmup": "warmup_steps",
    "steps": "max_steps",
    "num_steps": "max_steps",
}
# ... and the renames habits.py reads, so a misspelling of one ("learnig_rate") finds it too.
SUGGESTIONS = {**ALIASES, **{k: v.rsplit(".", 1)[-1] for k, v in habits.ANCHOR_KEYS.items() if isinstance(v, str)}}


def _suggest(loc: str, known: list[str]) -> list[str]:
    parent = loc.rsplit(".", 1)[0] + "." if "." in loc else ""
    last = loc.rsplit(".", 1)[-1]
    near = difflib.get_close_matches(last, SUGGESTIONS, 1, 0.85)
    alias = SUGGESTIONS.get(last) or (SUGGESTIONS[near[0]] if near else None)
    if alias:
        cands = [k for k in known if k.endswith("." + alias) or k == alias]
        same = [k for k in cands if k.startswith(parent)]
        if same or cands:
            return (same or cands)[:1]
    hint = difflib.get_close_matches(loc, known, n=1, cutoff=0.5)
    if not hint:  # compare the last part only among the section's keys
        sibs = [k[len(parent) :] for k in known if k.startswith(parent) and "." not in k[len(parent) :]]
        hint = [parent + h for h in difflib.get_close_matches(last, sibs, n=1, cutoff=0.4)]
    return hint


def suggest_key(dotted: str) -> Optional[str]:
    """The config key nearest to ``dotted`` (a misspelling, another tool's name for it), or None."""
    hint = _suggest(dotted, _known_keys(RunConfig))
    return hint[0] if hint else None


def _format_error(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(x) for x in e["loc"])
    last = loc.rsplit(".", 1)[-1]
    if e["type"] == "extra_forbidden" and habits.is_anchor(last):
        return f"{source}: unknown config key {loc!r}; {habits.hint(last)}"
    if e["type"] == "extra_forbidden":
        known = _known_keys(RunConfig)
        hint = _suggest(loc, known)
        return f"{source}: unknown config key {loc!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
    return f"{source}: config key {loc!r}: {e['msg']} (got {e.get('input')!r})"


def load_config(path: Optional[str | Path] = None, overrides: list[str] = (), base: Optional[dict] = None) -> RunConfig:
    """Reads YAML (or starts from ``base``), applies dotted ``key=value`` overrides, validates."""
    tree: dict = dict(base or {})
    source = "config"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise LmforgeError(f"config file not found: {p}")
        loaded = read_yaml(p) or {}
        if not isinstance(loaded, dict):
            raise LmforgeError(f"{p}: a config is a mapping of sections, got {type(loaded).__name__}")
        tree.update(loaded)
    for item in overrides:
        if "=" not in item:
            raise LmforgeError(f"override {item!r} is not key=value")
        key, _, value = item.partition("=")
        apply_override(tree, key.strip(), _parse_value(value))
    _read_anchor_keys(tree)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise LmforgeError(_format_error(err, source)) from None
    except RecursionError:
        raise LmforgeError(f"{source}: a value nested too deeply to read") from None


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """A run's saved ``config.yaml`` (then ``overrides``). A key this version does not know there means another
    lmforge version saved the run: the error says so and what to do, instead of only guessing a key."""
    try:
        load_config(path)
    except LmforgeError as e:
        if "unknown config key" not in str(e):
            raise
        raise LmforgeError(
            f"{e} (the run was saved by another lmforge version: rename or delete that key in {path})"
        ) from None
    return load_config(path, overrides)


def _read_anchor_keys(tree: dict) -> None:
    """Top-level keys other tools use (``cutoff_len``, ``learning_rate``...) become lmforge's, with a note."""
    for key in [k for k in tree if isinstance(k, str) and k not in RunConfig.model_fields and habits.is_anchor(k)]:
        value = tree.pop(key)
        mapped = habits.translate(key, value)
        for dotted, v in mapped.items():
            apply_override(tree, dotted, v)
        said = ", ".join(f"{d}={v!r}" for d, v in mapped.items()) or "nothing to change"
        print(f"lmforge: read {key}={value!r} as {said}", file=sys.stderr)


def save_config(cfg: RunConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
