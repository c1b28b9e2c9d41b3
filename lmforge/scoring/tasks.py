"""Tasks: data + prompt rendering + ``score()``, registered by name in ``lmforge.core.registry.TASKS``.

A registered task is a factory ``(data=None, split="all") -> Task``. Tasks also come from a YAML file
(keys: name, data, template, schema, metrics, stop, input_key, output_key, reward_metric, seed,
test_fraction; examples/cantos/task.yaml is one) or from ``"package.module:function"`` returning a
``Task``. The same ``score()`` serves evaluation and RL rewards.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from lmforge.core.errors import LmforgeError, did_you_mean, first_line
from lmforge.core.registry import TASKS
from lmforge.core.yamlio import read_yaml
from lmforge.data.readers import lines, loads, read_text
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
    metric_args: dict = field(default_factory=dict)
    """Keywords every metric of the task is given, e.g. {scheme: ABAB} for rhyme_rate_en."""

    def prompt(self, row: dict) -> str:
        head = self.template.split("{" + self.output_key + "}")[0]
        return head.format(**{k: v for k, v in row.items() if k != self.output_key})

    def reference(self, row: dict) -> str:
        """The row's reference output; "" for a row that is a prompt only (measures of the output alone)."""
        return str(row.get(self.output_key, ""))

    def postprocess(self, completion: str) -> str:
        """The answer part of a raw completion: cut at the first stop string, outer blanks removed."""
        for s in self.stop:
            if s in completion:
                completion = completion[: completion.index(s)]
        return completion.strip()

    def score(self, completion: str, row: dict) -> float:
        """One number for one completion (``reward_metric``): the reward RL trains on."""
        return M.METRICS.get(self.reward_metric).fn(
            self.postprocess(completion), self.reference(row), schema=self.schema, **self.metric_args
        )

    def evaluate(self, completions: list[str], rows: list[dict]) -> dict[str, float]:
        """Every metric of the task, averaged over ``completions`` (raw, as generated) for ``rows``."""
        preds = [self.postprocess(c) for c in completions]
        refs = [self.reference(r) for r in rows]
        return M.aggregate(self.metrics, preds, refs, schema=self.schema, **self.metric_args)

    def split(self, name: str, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> Task:
        return replace(self, rows=split_rows(self.rows, name, seed, test_fraction))


def read_jsonl(path: str | Path, keys: tuple[str, ...] = ("input", "output")) -> list[dict]:
    """JSON objects, one a line, each with string ``keys``; a bad line is a one-line file:line error."""
    p = Path(path)
    if not p.is_file():
        raise LmforgeError(f"task data not found: {p}")
    rows = []
    for n, line in enumerate(lines(read_text(p)), 1):
        if not line.strip():
            continue
        row = loads(line, f"{p}:{n}")
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
    "metric_args",
    "output_key",
    "reward_metric",
    "seed",
    "test_fraction",
}


def task_from_yaml(path: str | Path, data: Optional[str] = None, split: str = "all") -> Task:
    """A task described in YAML; its ``data`` path is relative to the YAML file."""
    p = Path(path)
    spec = read_yaml(p) or {}
    if not isinstance(spec, dict):
        raise LmforgeError(f"{p}: a task is a mapping (name, data, template, ...)")
    unknown = sorted(str(k) for k in set(spec) - _YAML_KEYS)
    if unknown:
        raise LmforgeError(f"{p}: unknown task key {unknown[0]!r}; known: {', '.join(sorted(_YAML_KEYS))}")
    src = data or _text(spec, "data", None, p)
    if not src:
        raise LmforgeError(f"{p}: key 'data' is required (a JSONL file)")
    src = Path(src) if data or Path(src).is_absolute() else p.parent / src
    in_key, out_key = _text(spec, "input_key", "input", p), _text(spec, "output_key", "output", p)
    schema = check_schema(spec.get("schema"), f"{p}: key 'schema'")
    metrics = _texts(spec, "metrics", p) or (
        ["json_em", "field_f1", "json_valid", "schema_valid"]
        if schema
        else ["exact_match", "rouge1", "rouge2", "rougeL"]
    )
    reward_metric = _text(spec, "reward_metric", metrics[0], p)
    for m in [*metrics, reward_metric]:
        try:  # unknown names fail now, with a suggestion
            if M.METRICS.get(m).fn is None:
                raise LmforgeError(f"metric {m!r} is computed on whole texts (lmforge eval --text), not per answer")
        except LmforgeError as e:
            raise LmforgeError(f"{p}: key {'metrics' if m in metrics else 'reward_metric'!r}: {e}") from None
    seed, test_fraction = spec.get("seed", SPLIT_SEED), spec.get("test_fraction", TEST_FRACTION)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise LmforgeError(f"{p}: key 'seed' must be a whole number, got {seed!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise LmforgeError(f"{p}: key 'test_fraction' must be a number between 0 and 1, got {test_fraction!r}")
    if not data and not src.is_file():
        raise LmforgeError(f"{p}: key 'data': task data not found: {src}")
    metric_args = _metric_args(spec, [*metrics, reward_metric], p)
    # rows are prompts only when every metric measures the output alone (rhyme, diversity)
    needs_output = any(M.METRICS.get(m).needs_reference for m in [*metrics, reward_metric])
    rows = read_jsonl(src, (in_key, out_key) if needs_output else (in_key,))
    if schema is not None and needs_output:  # the answers are JSON: a reference that is not would score every answer 0
        for n, row in enumerate(rows, 1):
            if M.parse_json(row[out_key]) is M._INVALID:
                raise LmforgeError(f"{src}: example {n}: {out_key!r} is not valid JSON (the task has a schema)")
    name = spec.get("name")
    task = Task(
        name=p.stem if name is None else str(name),
        rows=rows,
        template=_text(spec, "template", f"{{{in_key}}}\n{{{out_key}}}", p),
        schema=schema,
        metrics=list(metrics),
        stop=_texts(spec, "stop", p),
        input_key=in_key,
        output_key=out_key,
        reward_metric=reward_metric,
        metric_args=metric_args,
    )
    _check_template(task, src, p)
    return task.split(split, seed, float(test_fraction))


def _text(spec: dict, key: str, default: Optional[str], p: Path) -> Optional[str]:
    value = spec.get(key, default)
    if value is not None and not isinstance(value, str):
        raise LmforgeError(f"{p}: key {key!r} must be text, got {type(value).__name__} {value!r}"[:300])
    return value


def _texts(spec: dict, key: str, p: Path) -> list[str]:
    """A key holding one string or a list of strings, as a list (empty when absent)."""
    value = spec.get(key)
    value = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LmforgeError(f"{p}: key {key!r} must be a string or a list of strings, got {value!r}"[:300])
    return value


def _metric_args(spec: dict, metrics: list[str], p: Path) -> dict:
    """The ``metric_args`` mapping; each key must be a keyword one of the task's metrics takes."""
    args = spec.get("metric_args") or {}
    if not isinstance(args, dict):
        raise LmforgeError(f"{p}: key 'metric_args' must be a mapping, e.g. {{scheme: ABAB}}, got {args!r}"[:300])
    taken = {
        name
        for m in metrics
        for name, prm in inspect.signature(M.METRICS.get(m).fn).parameters.items()
        if prm.kind is prm.KEYWORD_ONLY and name != "schema"  # the task's own schema is given, not set here
    }
    for key in args:
        if key not in taken:
            raise LmforgeError(
                f"{p}: key 'metric_args': no metric of the task takes {key!r}" + did_you_mean(str(key), sorted(taken))
            )
    return dict(args)


def _check_template(task: Task, src: Path, p: Path) -> None:
    """Renders every row's prompt once, so that a template naming a column a row lacks (or written in a way
    ``str.format`` refuses) fails at load, naming the row, not in the middle of an evaluation."""
    for n, row in enumerate(task.rows, 1):
        try:
            task.prompt(row)
        except KeyError as e:
            raise LmforgeError(f"{p}: key 'template' uses {{{e.args[0]}}}, which {src} example {n} lacks") from None
        except (ValueError, IndexError, AttributeError, TypeError) as e:
            raise LmforgeError(f"{p}: key 'template' {task.template!r}: {first_line(e)}"[:300]) from None


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
