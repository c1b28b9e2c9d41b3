"""``lmforge eval`` with a served model (``openai:MODEL@BASE_URL``) beside a local one, offline against
``lmforge serve``: the same model gives the same completions and the same row of metrics either way."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("openai")
pytest.importorskip("fastapi")

from conftest import DATA  # noqa: E402
from serve_helpers import running  # noqa: E402

from lmforge.cli import main  # noqa: E402

KEY = "eval-key"


def test_remote_model_row_equals_local_row(tiny_model_dir, tmp_path, monkeypatch, capsys, one_thread):
    from lmforge.evaluate.remote import parse_remote
    from lmforge.serve import Limits, load_engine
    from lmforge.serve.app import create_app

    assert parse_remote("openai:org/m@http://h:1/v1") == ("org/m", "http://h:1/v1")
    assert parse_remote("openai:gpt-x") == ("gpt-x", None)
    engine = load_engine(str(tiny_model_dir), device="cpu", limits=Limits(max_tokens=64))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "report"
    try:
        with running(create_app(engine, "tiny", api_key=KEY)) as url:
            remote = f"openai:tiny@{url}/v1"
            args = [str(tiny_model_dir), remote, "--task", str(DATA / "cantos_task.yaml"), "--limit", "6"]
            assert main(["eval", *args, "--max-new-tokens", "24", "--constrained", "both", "--out", str(out)]) == 0
            monkeypatch.setenv("OPENAI_API_KEY", "wrong")
            assert main(["eval", remote, "--task", str(DATA / "cantos_task.yaml"), "--limit", "1"]) == 2
            assert "401" in capsys.readouterr().err  # the wrong key, in one line
    finally:
        engine.close()
    rows = {r["model"]: r for r in json.loads((out / "eval.json").read_text())["results"]}
    local, served = str(tiny_model_dir), remote
    assert rows[f"{served} +json"]["json_valid"] == 1.0
    for suffix in ("", " +json"):
        a, b = dict(rows[local + suffix]), dict(rows[served + suffix])
        a.pop("model"), b.pop("model")
        assert a == b
    comps = [json.loads(line) for line in (out / "completions.jsonl").open()]
    by = {}
    for c in comps:
        by.setdefault(c["model"], []).append(c["completion"])
    assert by[local] == by[served] and by[local + " +json"] == by[served + " +json"]
    assert len(by[local]) == 6
