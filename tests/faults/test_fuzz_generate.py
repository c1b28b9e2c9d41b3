"""``lmforge generate --file ROWS --template T [--schema S] --output OUT`` on generated rows, templates and
schema files, through the real command (a tiny model): exit 0 with one completion per row in OUT, or exit 2
with one line and OUT untouched."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from datafiles import files_of, jsonl_files
from fuzzing import CASES, REFUSED, SAID, budget, garbled, one_line, texts, time_limit, weighted
from hypothesis import given
from hypothesis import strategies as st

from lmforge.cli import main

TEMPLATES = ["{prompt}", "{instruction}\\n{input}", "Q: {prompt}\\nA:", "{", "}", "{0}", "{prompt.x}", "{prompt:d}"]
TEMPLATES += ["{prompt!z}", "{prompt[0]}", "{missing}", "{prompt:>{width}}", "plain", "{{prompt}}", ""]
SCHEMAS = ['{"type": "string"}', '{"type": "object", "properties": {"a": {"type": "integer"}}}', "[1", "{}"]
SCHEMAS += ['{"type": 5}', '{"anyOf": []}', "9" * 5000, "[" * 3000, '"\\ud800"']

formats = st.sampled_from(["prompt_completion", "alpaca"])
rows = weighted(
    (4, st.tuples(st.just(".jsonl"), formats.flatmap(lambda f: files_of(".jsonl", f)))),
    (2, st.tuples(st.just(".parquet"), formats.flatmap(lambda f: files_of(".parquet", f)))),
    (1, st.tuples(st.just(".jsonl"), jsonl_files)),
)
schema = weighted((3, st.none()), (1, st.sampled_from(SCHEMAS).map(str.encode)), (1, garbled(st.sampled_from(SCHEMAS))))


@budget(30)
@given(rows, weighted((3, st.sampled_from(TEMPLATES[:3])), (2, st.sampled_from(TEMPLATES)), (1, texts)), schema)
def test_generate_from_a_file(tiny_model_dir, one_thread, suffix_and_data, template, schema_bytes):
    suffix, data = suffix_and_data
    CASES["lmforge generate --file/--template/--schema"] += 1
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / f"rows{suffix}", Path(d) / "out.jsonl"
        src.write_bytes(data)
        argv = ["generate", str(tiny_model_dir), "--file", str(src), f"--template={template}", "--output", str(out)]
        argv += ["--max-new-tokens", "2", "--temperature", "0", "--device", "cpu", "--raw"]
        if schema_bytes is not None:
            (Path(d) / "s.json").write_bytes(schema_bytes)
            argv += ["--schema", str(Path(d) / "s.json"), "--max-new-tokens", "24"]
        err = io.StringIO()
        with time_limit(60), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        if code == 2:
            REFUSED["lmforge generate --file/--template/--schema"] += 1
            errors = [ln for ln in err.getvalue().splitlines() if ln.startswith("lmforge generate: error:")]
            assert len(errors) == 1, err.getvalue()
            one_line(errors[0])
            kind = errors[0].split(": ", 3)[-1][:60]
            SAID.setdefault("lmforge generate --file/--template/--schema", __import__("collections").Counter())[
                kind
            ] += 1
            assert not out.exists() and not list(Path(d).glob(".out.jsonl*"))  # nothing half written
            return
        assert code == 0, err.getvalue()
        lines = out.read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines: U+2028 may be inside
        assert lines and all("completion" in json.loads(ln) for ln in lines)
