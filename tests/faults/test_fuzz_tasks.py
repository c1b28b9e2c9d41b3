"""Generated task YAML files (and their JSONL rows) through ``load_task`` and then everything evaluation does
with a task: prompts, references, scores. Odd input is refused at load, in one line naming the file or the
key; a task that loads never raises later."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from datafiles import jsonl_files
from fuzzing import any_bytes, budget, garbled, odd, outcome, texts, time_limit, weighted
from hypothesis import given
from hypothesis import strategies as st

from lmforge.scoring.tasks import Task, load_task

SCHEMAS = [
    None,
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
    {"type": "array", "items": {"type": "string"}},
    {"type": "strin"},
    "not a schema",
    [1],
    {"$ref": "#/nowhere"},
]
METRICS = ["exact_match", "rouge1", "json_em", "field_f1", "json_valid", "schema_valid", "bleu", "", "perplexity"]
TEMPLATES = ["{input}\n{output}", "Q: {input}\nA: {output}", "{output}", "{input}", "{0}", "{", "}", "{inp", "{x.y}"]
TEMPLATES += ["{input!r} {output}", "{input:>5}{output}", "{input[0]}{output}", "{missing}{output}", "plain"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts, st.sampled_from(["", "auto", "2"]))


def good_or_odd(good: st.SearchStrategy, odd_values: st.SearchStrategy = scalars) -> st.SearchStrategy:
    return weighted((6, good), (1, odd_values))


spec_values = {
    "name": good_or_odd(texts),
    "data": good_or_odd(st.just("rows.jsonl"), st.one_of(st.just("missing.jsonl"), scalars, st.just("."))),
    "template": good_or_odd(st.sampled_from(TEMPLATES), st.one_of(texts, scalars)),
    "schema": good_or_odd(st.sampled_from(SCHEMAS)),
    "metrics": good_or_odd(st.lists(st.sampled_from(METRICS[:6]), max_size=3), st.sampled_from(METRICS)),
    "stop": good_or_odd(st.lists(odd, max_size=3), texts),
    "input_key": good_or_odd(st.sampled_from(["input", "question", "output"]), st.lists(texts, max_size=1)),
    "output_key": good_or_odd(st.sampled_from(["output", "answer", "input"])),
    "reward_metric": good_or_odd(st.sampled_from(METRICS[:6]), st.sampled_from(METRICS)),
    "seed": good_or_odd(st.integers()),
    "test_fraction": good_or_odd(st.floats(0.01, 0.99), st.floats()),
}
spec = st.fixed_dictionaries(
    {"data": spec_values["data"]},
    optional={k: v for k, v in spec_values.items() if k != "data"},
).flatmap(lambda s: weighted((9, st.just(s)), (1, st.just({**s, "extra": 1}))))
row = st.fixed_dictionaries(
    {"input": weighted((9, odd), (1, scalars)), "output": weighted((9, odd), (1, scalars))},
    optional={"question": odd, "answer": st.one_of(odd, st.just('{"a": 1}'))},
)
rows_file = st.one_of(
    st.lists(row, min_size=1, max_size=4).map(
        lambda rs: "\n".join(json.dumps(r, ensure_ascii=False) for r in rs).encode("utf-8", "surrogatepass")
    ),
    jsonl_files,
)
yaml_text = st.one_of(
    spec.map(lambda s: yaml.safe_dump(s, allow_unicode=True).encode("utf-8", "surrogatepass")),
    spec.map(lambda s: yaml.safe_dump(s, allow_unicode=True).encode("utf-8", "surrogatepass")),
    garbled(spec.map(lambda s: yaml.safe_dump(s))),
    any_bytes,
)


@budget(150)
@given(yaml_text, rows_file, st.sampled_from(["all", "train", "test"]))
def test_task_yaml(task_yaml, rows, split):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "task.yaml"
        p.write_bytes(task_yaml)
        (Path(d) / "rows.jsonl").write_bytes(rows)
        task = outcome("task YAML", load_task, str(p), split=split, names=(str(p), str(Path(d) / "rows.jsonl")))
        if not isinstance(task, Task):
            return
        with time_limit(20):  # a loaded task answers for every row, whatever the completion
            for r in task.rows:
                task.prompt(r)
                task.reference(r)
                task.score(task.reference(r), r)
                task.score("", r)
            task.evaluate(["x"] * len(task.rows), task.rows)
