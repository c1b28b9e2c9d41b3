"""Inputs the fuzzing found (or showed near) a traceback with, each replayed as a plain example: now a
one-line error at its place, or the rows it holds."""

from __future__ import annotations

import json

import pytest
from fuzzing import chat_tokenizer, one_line

from lmforge.core.config import DataConfig, SourceConfig, load_config
from lmforge.core.errors import LmforgeError
from lmforge.data.examples import source_examples
from lmforge.data.readers import read_records
from lmforge.generate.constrained import JsonConstraint, check_schema
from lmforge.scoring.tasks import load_task
from lmforge.sweep.spec import load_sweep


def _refused(path, *where: str) -> str:
    with pytest.raises(LmforgeError) as e:
        read_records(path)
    return one_line(str(e.value), where or (str(path),))


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_nesting_deeper_than_the_parser_is_a_line_not_a_recursion_error(tmp_path, suffix):
    p = tmp_path / f"rows{suffix}"
    deep = "[" * 5000 + "]" * 5000
    p.write_text('{"text": "ok"}\n' + ('{"text": ' + deep + "}") if suffix == ".jsonl" else "[" + deep + "]")
    assert "nested too deeply" in _refused(p, f"{p}:")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_number_past_pythons_digit_limit_is_a_line_not_a_value_error(tmp_path, suffix):
    p = tmp_path / f"rows{suffix}"
    row = '{"text": "x", "n": ' + "9" * 5000 + "}"
    p.write_text(row if suffix == ".jsonl" else f"[\n{row}\n]")
    assert "more than 4300 digits" in _refused(p, f"{p}:1" if suffix == ".jsonl" else f"{p}:2")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_lone_surrogate_escape_is_refused_at_its_line_not_in_the_tokenizer(tmp_path, suffix):
    # json.loads('"\\ud800"') is a str no tokenizer can encode: it used to surface as the tokenizers
    # library's TypeError ("TextEncodeInput must be Union[...]") from the middle of fine-tuning.
    p = tmp_path / f"rows{suffix}"
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "\ud800", "completion": "c"}]
    text = "\n".join(json.dumps(r) for r in rows) if suffix == ".jsonl" else json.dumps(rows, indent=1)
    p.write_text(text)
    assert "\\ud800" in text
    msg = _refused(p, f"{p}:2" if suffix == ".jsonl" else f"{p}:")
    assert "half of a UTF-16 pair" in msg
    with pytest.raises(LmforgeError):
        source_examples(SourceConfig(path=str(p)), DataConfig(format="prompt_completion"), chat_tokenizer(), 48)


def test_a_surrogate_pair_escape_is_one_character_and_reads(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"text": "\\ud83d\\ude00"}\n')
    assert read_records(p)[0].row == {"text": "\U0001f600"}


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85"])
def test_jsonl_rows_are_cut_at_line_ends_only(tmp_path, sep):
    # str.splitlines() also cuts at U+2028, U+0085, form feed...: a row holding one raw inside a string
    # (json.dumps(ensure_ascii=False) writes them so) was refused as "Unterminated string"
    p = tmp_path / "rows.jsonl"
    p.write_text(json.dumps({"text": f"a{sep}b"}, ensure_ascii=False) + "\n" + json.dumps({"text": "c"}) + "\n")
    records = read_records(p)
    assert [r.row["text"] for r in records] == [f"a{sep}b", "c"]
    assert [r.where for r in records] == [f"{p}:1", f"{p}:2"]


def test_text_lines_are_numbered_as_editors_number_them(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("one\x0cstill one\ntwo\r\nthree\n")
    assert [(r.where, r.row["text"]) for r in read_records(p)] == [
        (f"{p}:1", "one\x0cstill one"),
        (f"{p}:2", "two"),
        (f"{p}:3", "three"),
    ]


# ---- configs and overrides -------------------------------------------------------------------------------


def _config_refused(path, overrides=(), *names: str) -> str:
    with pytest.raises(LmforgeError) as e:
        load_config(path, list(overrides))
    return one_line(str(e.value), names)


@pytest.mark.parametrize(
    "text,line",
    [
        ("name: !!timestamp 2001-02-30\n", 1),  # ValueError: day is out of range for month
        ("seed: " + "9" * 5000 + "\n", 1),  # ValueError: Exceeds the limit (4300 digits)
        ("train:\n  lr: !!float\n", 2),  # IndexError: string index out of range
        ("model: " + "[" * 3000 + "]" * 3000 + "\n", 1),  # RecursionError
    ],
)
def test_yaml_pyyaml_cannot_construct_is_one_line(tmp_path, text, line):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    assert "not valid YAML" in _config_refused(p, (), str(p))


def test_dates_in_a_config_stay_text(tmp_path):
    # PyYAML read 2024-01-01 as datetime.date: "name: 2024-01-01" failed, and through a habit key
    # (base_model, lora_target) it was a TypeError ('datetime.date' object is not iterable)
    p = tmp_path / "run.yaml"
    p.write_text("name: 2024-01-01\nbase_model: 2024-01-02\n")
    cfg = load_config(p, ["seed=7", "out_dir=2001-02-30"])
    assert (cfg.name, cfg.model.base, cfg.out_dir) == ("2024-01-01", "2024-01-02", "2001-02-30")


@pytest.mark.parametrize("value", ["2001-02-30", "!!float", "!!int x", "9" * 5000, "[" * 3000])
def test_an_override_yaml_cannot_read_is_its_text(value):
    assert load_config(None, [f"name={value}"]).name == value


@pytest.mark.parametrize(
    "item,key",
    [
        ("lora_target=5", "lora_target"),  # TypeError: 'int' object is not iterable
        ("lora_target={a: 1}", "lora_target"),  # a dict's keys were read as module names
        ("quantization_bit=x", "quantization_bit"),  # ValueError: invalid literal for int()
        ("quantization_bit=.inf", "quantization_bit"),  # OverflowError: cannot convert float infinity
        ("quantization_bit=[4]", "quantization_bit"),  # TypeError: int() argument must be ...
        ("output_dir=", "output_dir"),  # read as name 'None': the run went to ./None
        ("output_dir=/", "output_dir"),  # name '': the run was written into out_dir itself
        ("val_set_size=2024-01-01", "val_set_size"),
    ],
)
def test_other_tools_keys_with_odd_values_are_one_line_naming_the_key(tmp_path, item, key):
    p = tmp_path / "run.yaml"
    key_, _, value = item.partition("=")
    p.write_text(f"{key_}: {value}\n" if value else f"{key_}:\n")
    assert _config_refused(p, (), key).startswith(key)
    assert _config_refused(None, [item], key).startswith(key)


# ---- task files ----------------------------------------------------------------------------------------


def _task(tmp_path, spec: str, rows: bytes = b'{"input": "2+2", "output": "4"}\n{"input": "1+1", "output": "2"}\n'):
    (tmp_path / "rows.jsonl").write_bytes(rows)
    p = tmp_path / "task.yaml"
    p.write_text("data: rows.jsonl\n" + spec)
    return p


def _task_refused(p, *names: str) -> str:
    with pytest.raises(LmforgeError) as e:
        load_task(str(p))
    return one_line(str(e.value), names or (str(p),))


@pytest.mark.parametrize(
    "spec,said",
    [
        ("metrics: 5\n", "key 'metrics'"),  # TypeError: 'int' object is not subscriptable
        ("stop: 5\n", "key 'stop'"),  # TypeError: 'int' object is not iterable
        ("input_key: [a]\n", "key 'input_key'"),  # TypeError: unhashable type: 'list'
        ("template: 5\n", "key 'template'"),  # AttributeError at the first prompt
        ("seed: abc\n", "key 'seed'"),  # ValueError: invalid literal for int()
        ("test_fraction: .nan\n", "key 'test_fraction'"),  # ValueError: cannot convert float NaN to integer
        ("template: '{question} {output}'\n", "{question}"),  # KeyError in the middle of an evaluation
        ("template: '{input[0]!z}'\n", "key 'template'"),  # ValueError in the middle of an evaluation
        ("metrics: [perplexity]\n", "whole texts"),  # refused only when evaluate() ran
        ("metrics: [rouge]\n", "key 'metrics'"),
    ],
)
def test_task_yaml_odd_values_fail_at_load_naming_the_key(tmp_path, spec, said):
    assert said in _task_refused(_task(tmp_path, spec))


def test_one_metric_written_as_text_is_that_metric(tmp_path):
    # used to be read letter by letter: "unknown metric 'j'"
    assert load_task(str(_task(tmp_path, "metrics: exact_match\n"))).metrics == ["exact_match"]


@pytest.mark.parametrize(
    "rows,said",
    [
        (b'{"input": "a", "output": "b"}\n\xff\n', "not UTF-8"),  # UnicodeDecodeError
        (b'{"input": "a", "output": "b", "n": ' + b"9" * 5000 + b"}\n", "digits"),  # AttributeError: no .msg
        (b'{"input": "a", "output": ' + b"[" * 5000 + b"]" * 5000 + b"}\n", "nested too deeply"),  # RecursionError
    ],
)
def test_task_rows_that_python_cannot_read_are_one_line(tmp_path, rows, said):
    p = _task(tmp_path, "", rows)
    assert said in _task_refused(p, f"{tmp_path / 'rows.jsonl'}:")


def test_a_task_yaml_not_in_utf8_is_one_line(tmp_path):
    p = tmp_path / "task.yaml"
    p.write_bytes(b"data: rows.jsonl\nname: \xe9t\xe9\n")  # Latin-1: UnicodeDecodeError before
    assert "not UTF-8" in _task_refused(p)


# ---- JSON schemas ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [{"anyOf": []}, {"type": "object", "properties": {"a": False}, "required": ["a"]}])
def test_a_schema_nothing_satisfies_is_refused_not_decoded_to_an_empty_string(schema):
    # xgrammar compiles {"anyOf": []}; decoding under it stopped at once and returned "" (not JSON)
    with pytest.raises(LmforgeError) as e:
        JsonConstraint(chat_tokenizer(), schema)
    one_line(str(e.value), ("schema",))


def test_xgramars_log_prefix_is_not_part_of_the_message():
    with pytest.raises(LmforgeError) as e:
        check_schema({"type": "strin"})
    assert str(e.value) == 'schema: invalid JSON schema: Unsupported type "strin"'


def test_a_bad_byte_after_a_byte_order_mark_is_named_at_its_place(tmp_path):
    # utf-8-sig counts offsets after the BOM: the message named the wrong byte, offset and line
    p = tmp_path / "rows.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "a"}\n{"text": "\xff"}\n')
    assert _refused(p).startswith(f"{p}:2: not UTF-8 text (byte 0xff at offset 27)")


# ---- lmforge generate --file --template --schema --output ---------------------------------------------


def _generate(tmp_path, model, rows: bytes, *argv: str) -> tuple[int, str]:
    import contextlib
    import io

    from lmforge.cli import main

    (tmp_path / "rows.parquet" if rows.startswith(b"PAR1") else tmp_path / "rows.jsonl").write_bytes(rows)
    src = tmp_path / ("rows.parquet" if rows.startswith(b"PAR1") else "rows.jsonl")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["generate", str(model), "--file", str(src), "--max-new-tokens", "2", "--raw", *argv])
    return code, err.getvalue()


@pytest.mark.parametrize("template", ["{", "{0}", "{prompt.x}", "{prompt:d}", "{prompt!z}"])
def test_generate_template_str_format_refuses_is_one_line(tmp_path, tiny_model_dir, template):
    # only KeyError was caught: ValueError, IndexError, AttributeError were tracebacks
    code, err = _generate(tmp_path, tiny_model_dir, b'{"prompt": "The sea"}\n', "--template", template)
    assert code == 2 and one_line(err.strip(), (f"{tmp_path / 'rows.jsonl'}:1: --template",))


@pytest.mark.parametrize("schema", [b"9" * 5000, b"[" * 3000, b"\xff", b'"\\ud800"'])
def test_generate_schema_files_python_cannot_read_are_one_line(tmp_path, tiny_model_dir, schema):
    (tmp_path / "s.json").write_bytes(schema)  # ValueError, RecursionError, UnicodeDecodeError before
    code, err = _generate(tmp_path, tiny_model_dir, b'{"prompt": "x"}\n', "--schema", str(tmp_path / "s.json"))
    assert code == 2 and one_line(err.strip(), (str(tmp_path / "s.json"),))


def test_generate_output_of_rows_with_bytes_is_written_whole(tmp_path, tiny_model_dir):
    # a Parquet binary column made json.dumps raise after the output file was opened: half a file
    from datafiles import parquet_bytes

    out = tmp_path / "out.jsonl"
    rows = parquet_bytes({"prompt": ["The sea", "Le vent"], "blob": [b"\x00\x01", b"\xff"]})
    code, err = _generate(tmp_path, tiny_model_dir, rows, "--output", str(out))
    assert code == 0, err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["prompt"] for g in got] == ["The sea", "Le vent"] and got[0]["blob"] == repr(b"\x00\x01")


@pytest.mark.parametrize(
    "item,key",
    [
        ("train.batch_size=.inf", "train.batch_size"),  # OverflowError: cannot convert float infinity to integer
        ("train.max_steps=1e400", "train.max_steps"),  # the same, 1e400 being infinity
        ("data.train=.inf", "data.train"),  # TypeError: 'float' object is not iterable
        ("data.val=5", "data.val"),
        ("rl.rewards=0.5", "rl.rewards"),  # TypeError: 'float' object is not iterable
    ],
)
def test_a_number_where_a_count_or_a_list_goes_is_one_line_naming_the_key(item, key):
    assert f"config key '{key}'" in _config_refused(None, [item], key)


# ---- sweep files ---------------------------------------------------------------------------------------

SWEEP_BASE = "name: base\nmodel: {preset: tiny}\ndata: {train: corpus.txt}\n"


def _sweep(tmp_path, monkeypatch, space: str, extra: str = ""):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(SWEEP_BASE)
    p = tmp_path / "sweep.yaml"
    p.write_text(f"config: base.yaml\nbudget: {{n_trials: 2}}\nspace:\n  {space}\n{extra}")
    return p


def test_a_range_over_a_key_outside_the_schema_loads(tmp_path, monkeypatch):
    # is_int() called (1).is_integer(): AttributeError on Python 3.11 for every such key without a step
    sweep, _, _ = load_sweep(_sweep(tmp_path, monkeypatch, "train.objective_args.eps: {low: 0, high: 1}"))
    assert sweep.space["train.objective_args.eps"].high == 1


@pytest.mark.parametrize(
    "space,said",
    [
        ("train.lr: {choices: [0.1], low: 0.01}", "give either low and high, or choices"),  # TypeError: >= None
        ("train.max_steps: {low: 1, high: .inf}", "finite"),  # OverflowError: cannot convert float infinity
        ("train.max_steps: {low: .nan, high: 5}", "finite"),  # ValueError: cannot convert float NaN to integer
        ("train.max_steps: {low: 1, high: 5, step: 0}", "step"),  # grid sampling with a zero step
        ("name: {low: 0, high: 1}", "config key 'name'"),  # AttributeError: 'int' object has no attribute ...
    ],
)
def test_sweep_ranges_are_checked_in_one_line(tmp_path, monkeypatch, space, said):
    p = _sweep(tmp_path, monkeypatch, space)
    with pytest.raises(LmforgeError) as e:
        load_sweep(p)
    assert said in one_line(str(e.value), (str(p),))


def test_a_sweep_key_with_a_line_break_is_quoted_in_one_line(tmp_path, monkeypatch):
    p = _sweep(tmp_path, monkeypatch, "train.lr: {low: 0.1, high: 0.2}", 'budget: {"\\r": 1}\n')
    with pytest.raises(LmforgeError) as e:
        load_sweep(p)
    assert "budget.\\r: Extra inputs" in one_line(str(e.value), (str(p),))


def test_a_sweep_file_not_in_utf8_is_one_line(tmp_path, monkeypatch):
    p = _sweep(tmp_path, monkeypatch, "train.lr: {low: 0.1, high: 0.2}")
    p.write_bytes(p.read_bytes() + b"name: caf\xe9\n")  # UnicodeDecodeError before
    with pytest.raises(LmforgeError) as e:
        load_sweep(p)
    assert "not UTF-8" in one_line(str(e.value), (str(p),))


@pytest.mark.parametrize("item", ["val_set_size=\x1e", "quantization_bit=a\x85b"])
def test_an_other_tools_value_with_a_line_break_is_quoted(item):
    # the value was written as is: "\x1e" and "\x85" are line breaks to str.splitlines
    assert one_line(_config_refused(None, [item], item.split("=")[0]))


def test_an_unwritable_constant_in_a_schema_is_refused_not_a_dead_end():
    # {"items": {"enum": [], "const": ";"}} with a tokenizer that has no ";": after '["' the grammar allowed
    # no token at all (every logit -inf); the decode could not go on
    with pytest.raises(LmforgeError) as e:
        JsonConstraint(chat_tokenizer(), {"items": {"enum": [], "const": ";"}})
    assert "cannot spell" in one_line(str(e.value), ("schema",))
    JsonConstraint(chat_tokenizer(), {"type": "object", "properties": {"a": {"enum": ["true", 1, None]}}})


def test_a_tiny_positive_temperature_is_greedy_not_nan():
    # 1.2e-220 divided the logits into infinities: "probability tensor contains inf/nan" (a 500 from serve)
    from lmforge.generate import GenerationSettings

    assert GenerationSettings(temperature=1.2e-220).temperature == 0.0
    assert GenerationSettings(temperature=0.5).temperature == 0.5


def test_serve_answers_a_tiny_temperature(tiny_model_dir):
    from fastapi.testclient import TestClient

    from lmforge.serve import Limits, load_engine
    from lmforge.serve.app import create_app

    engine = load_engine(str(tiny_model_dir), device="cpu", limits=Limits(max_tokens=4))
    try:
        with TestClient(create_app(engine, "tiny")) as client:
            body = {"model": "tiny", "prompt": "", "max_tokens": 1, "temperature": 1.2112124662716244e-220}
            r = client.post("/v1/completions", json=body)
            assert r.status_code == 200, r.text
    finally:
        engine.close()


def test_an_unspellable_constant_is_quoted_in_one_line():
    with pytest.raises(LmforgeError) as e:
        JsonConstraint(chat_tokenizer(), {"const": "\x85"})
    one_line(str(e.value), ("schema",))
