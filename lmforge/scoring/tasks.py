"""Tasks: data + prompt rendering + ``score()``, registered by name in ``lmforge.core.registry.TASKS``.

A registered task is a factory ``(data=None, split="all") -> Task``. Tasks also come from a YAML file
(keys: name, data, template, schema, metrics, stop, input_key, output_key, reward_metric, seed,
test_fraction; examples/cantos/task.yaml is one) or from ``"package.module:function"`` returning a
``Task``. The same ``score()`` serves evaluation and RL rewards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from lmforge.core.errors import LmforgeError, did_you_mean
from lmforge.core.registry import TASKS
from lmforge.data.split import SPLIT_SEED, TEST_FRACTION, split_rows  # noqa: F401 (re-exported)
from lmforge.generate.constrained import check_schema
from lmforge.scoring import metrics as M


@dataclass
class Task:
    """Examples and how to turn one into a prompt, a reference and a score."""

    name: str
    rows: list[dict]
    template: str = "{input}\n{output}"
    """The training format; the prompt is everything before ``{output}``."""
    schema: Optional[dict] = None
    """JSON schema of the output, for constrained decoding and ``schema_valid``; None: not JSON."""
    metrics: list[str] = field(default_factory=lambda: ["exact_match", "rouge1", "rouge2", "rougeL"])
    stop: list[str] = field(default_factory=list)
    """A completion is cut at the first of these strings."""
    input_key: str = "input"
    output_key: str = "output"
    reward_metric: str = "exact_match"
    """The metric ``score()`` returns (the RL reward)."""

    def prompt(self, row: dict) -> str:
        head = self.template.split("{" + self.output_key + "}")[0]
        return head.format(**{k: v for k, v in row.items() if k != self.output_key})

    def reference(self, row: dict) -> str:
        return str(row[self.output_key])

    def postprocess(self, completion: str) -> str:
        """The answer part of a raw completion: cut at the first stop string, outer blanks removed."""
        for s in self.stop:
            if s in completion:
                completion = completion[: completion.index(s)]
        return completion.strip()

    def score(self, completion: str, row: dict) -> float:
        """One number for one completion (``reward_metric``): the reward RL trains on."""
        return M.METRICS.get(self.reward_metric).fn(
            self.postprocess(completion), self.reference(row), schema=self.schema
        )

    def evaluate(self, completions: list[str], rows: list[dict]) -> dict[str, float]:
        """Every metric of the task, averaged over ``completions`` (raw, as generated) for ``rows``."""
        preds = [self.postprocess(c) for c in completions]
        refs = [self.reference(r) for r in rows]
        return M.aggregate(self.metrics, preds, refs, schema=self.schema)

    def split(self, name: str, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> Task:
        return replace(self, rows=split_rows(self.rows, name, seed, test_fraction))


def read_jsonl(path: str | Path, keys: tuple[str, ...] = ("input", "output")) -> list[dict]:
    """JSON objects, one a line, each with string ``keys``; a bad line is a one-line file:line error."""
    p = Path(path)
    if not p.is_file():
        raise LmforgeError(f"task data not found: {p}")
    rows = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise LmforgeError(f"{p}:{n}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(row, dict):
            raise LmforgeError(f"{p}:{n}: expected an object with keys {list(keys)}, got {type(row).__name__}")
        for k in keys:
            if not isinstance(row.get(k), str):
                got = "missing" if k not in row else type(row[k]).__name__
                raise LmforgeError(f"{p}:{n}: key {k!r} must be a string ({got})")
        rows.append(row)
    if not rows:
        raise LmforgeError(f"{p}: no examples")
    return rows


# ---- user tasks ---------------------------------------------------------------------------------

_YAML_KEYS = {
    "name",
    "data",
    "template",
    "schema",
    "metrics",
    "stop",
    "input_key",
    "output_key",
    "reward_metric",
    "seed",
    "test_fraction",
}


def task_from_yaml(path: str | Path, data: Optional[str] = None, split: str = "all") -> Task:
    """A task described in YAML; its ``data`` path is relative to the YAML file."""
    import yaml

    p = Path(path)
    try:
        spec = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise LmforgeError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise LmforgeError(f"{p}: a task is a mapping (name, data, template, ...)")
    unknown = sorted(set(spec) - _YAML_KEYS)
    if unknown:
        raise LmforgeError(f"{p}: unknown task key {unknown[0]!r}; known: {', '.join(sorted(_YAML_KEYS))}")
    src = data or spec.get("data")
    if not src:
        raise LmforgeError(f"{p}: key 'data' is required (a JSONL file)")
    src = Path(src) if data or Path(src).is_absolute() else p.parent / src
    in_key, out_key = spec.get("input_key", "input"), spec.get("output_key", "output")
    schema = check_schema(spec.get("schema"), f"{p}: key 'schema'")
    metrics = spec.get("metrics") or (
        ["json_em", "field_f1", "json_valid", "schema_valid"]
        if schema
        else ["exact_match", "rouge1", "rouge2", "rougeL"]
    )
    reward_metric = spec.get("reward_metric", metrics[0])
    for m in [*metrics, reward_metric]:
        M.METRICS.get(m)  # unknown names fail now, with a suggestion
    rows = read_jsonl(src, (in_key, out_key))
    if schema is not None:  # the answers are JSON: a reference that is not would score every answer 0
        for n, row in enumerate(rows, 1):
            if M.parse_json(row[out_key]) is M._INVALID:
                raise LmforgeError(f"{src}: example {n}: {out_key!r} is not valid JSON (the task has a schema)")
    task = Task(
        name=spec.get("name", p.stem),
        rows=rows,
        template=spec.get("template", f"{{{in_key}}}\n{{{out_key}}}"),
        schema=schema,
        metrics=list(metrics),
        stop=list(spec.get("stop", [])),
        input_key=in_key,
        output_key=out_key,
        reward_metric=reward_metric,
    )
    return task.split(split, int(spec.get("seed", SPLIT_SEED)), float(spec.get("test_fraction", TEST_FRACTION)))


def load_task(spec: str, data: Optional[str] = None, split: str = "all") -> Task:
    """A task by registered name, YAML file or ``package.module:function``."""
    if spec.endswith((".yaml", ".yml")):
        if not Path(spec).is_file():
            raise LmforgeError(f"task file not found: {spec}")
        return task_from_yaml(spec, data, split)
    if ":" not in spec and spec not in TASKS:  # a bare name: say what else a task can be
        raise LmforgeError(
            f"unknown task {spec!r}{did_you_mean(spec, TASKS.names())}; a task is a YAML file "
            "(examples/cantos/task.yaml is one), package.module:function or a registered name"
        )
    factory = TASKS.get(spec)
    task = factory(data=data, split=split)
    if not isinstance(task, Task):
        raise LmforgeError(f"task {spec!r} returned {type(task).__name__}, not lmforge.scoring.tasks.Task")
    return task
