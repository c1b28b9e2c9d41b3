"""Bad requests to ``lmforge serve`` get the right status and an OpenAI-style error body; the server keeps
serving after each."""

from __future__ import annotations

import threading
import time

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from serve_helpers import running  # noqa: E402

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def engine(tiny_model_dir, one_thread):
    from lmforge.serve import Limits, load_engine

    e = load_engine(
        str(tiny_model_dir),
        device="cpu",
        limits=Limits(max_tokens=64, max_n=2, max_prompt_tokens=40, max_body_bytes=4000),
    )
    yield e
    e.close()


@pytest.fixture(scope="module")
def url(engine):
    from lmforge.serve.app import create_app

    with running(create_app(engine, "tiny", api_key=KEY)) as u:
        yield u


def _error(r, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"} and body["error"]["message"]
    assert "Traceback" not in r.text
    return body["error"]


def _still_serving(url: str) -> None:
    r = httpx.post(
        f"{url}/v1/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "tiny", "prompt": "Le vent", "max_tokens": 4, "temperature": 0},
    )
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] in ("stop", "length")


BAD = [
    # (what, request kwargs, status, param or code)
    ("malformed JSON", {"content": b'{"model": "tiny", "prompt": '}, 400, None),
    ("unknown model", {"json": {"model": "gpt-9", "prompt": "x"}}, 404, "model_not_found"),
    ("negative max_tokens", {"json": {"model": "tiny", "prompt": "x", "max_tokens": -3}}, 400, "max_tokens"),
    ("max_tokens over the bound", {"json": {"model": "tiny", "prompt": "x", "max_tokens": 65}}, 400, "max_tokens"),
    ("n over the bound", {"json": {"model": "tiny", "prompt": "x", "n": 3}}, 400, "n"),
    ("missing prompt", {"json": {"model": "tiny"}}, 400, "prompt"),
    (
        "prompt over the bound",
        {"json": {"model": "tiny", "prompt": "Le vent se lève " * 20}},
        400,
        "context_length_exceeded",
    ),
    ("body over the bound", {"json": {"model": "tiny", "prompt": "x" * 5000}}, 413, None),
    (
        "bad schema",
        {
            "json": {
                "model": "tiny",
                "prompt": "x",
                "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}},
            }
        },
        400,
        "response_format",
    ),
    (
        "chat without a template",
        {"path": "/v1/chat/completions", "json": {"model": "tiny", "messages": [{"role": "user", "content": "x"}]}},
        400,
        "messages",
    ),
]


@pytest.mark.parametrize("what,kw,status,where", BAD, ids=[b[0] for b in BAD])
def test_bad_request(url, what, kw, status, where):
    kw = dict(kw)
    path = kw.pop("path", "/v1/completions")
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    err = _error(httpx.post(f"{url}{path}", headers=headers, **kw), status)
    if where is not None:
        assert where in (err["param"], err["code"]), err
    _still_serving(url)


def test_api_key(url):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        err = _error(httpx.get(f"{url}/v1/models", headers=headers), 401)
        assert err["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    ok = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    assert ok.models.list().data[0].id == "tiny"
    with pytest.raises(openai.NotFoundError):
        ok.completions.create(model="other", prompt="x")
    _error(httpx.get(f"{url}/v1/nowhere", headers={"Authorization": f"Bearer {KEY}"}), 404)


def test_queue_full_is_429_and_timeout_is_504(tiny_model_dir, one_thread):
    from lmforge.generate import GenerationSettings
    from lmforge.model import load_model_and_tokenizer
    from lmforge.serve import Engine, Limits
    from lmforge.serve.app import create_app
    from lmforge.serve.engine import Job

    model, tok = load_model_and_tokenizer(str(tiny_model_dir), device="cpu")
    engine = Engine(model, tok, Limits(max_queue=1, max_tokens=64))
    release = threading.Event()
    plain = {"model": "tiny", "prompt": "x", "max_tokens": 2}
    try:
        with running(create_app(engine, "tiny")) as u:
            # hold the only place in the queue: the worker waits inside this job's first event
            job = Job(
                prompts=[[tok.bos_token_id]],
                settings=GenerationSettings(max_new_tokens=64, temperature=1.0),
                emit=lambda ev: release.wait(10),
            )
            engine.submit(job)
            err = _error(httpx.post(f"{u}/v1/completions", json=plain), 429)
            assert err["type"] == "rate_limit_error"
            release.set()
            t0 = time.monotonic()
            while engine._load and time.monotonic() - t0 < 30:
                time.sleep(0.01)
            assert httpx.post(f"{u}/v1/completions", json=plain).status_code == 200
            engine.limits.timeout_s = 0.0
            assert _error(httpx.post(f"{u}/v1/completions", json=plain), 504)["code"] == "timeout"
            engine.limits.timeout_s = 60.0
            assert httpx.post(f"{u}/v1/completions", json=plain).status_code == 200
    finally:
        release.set()
        engine.close()


@pytest.mark.slow
def test_lmforge_serve_command(tiny_model_dir, tmp_path):
    """The real command: 127.0.0.1 by default, the key from LMFORGE_API_KEY, a clean stop on SIGINT."""
    import os
    import signal
    import subprocess
    import sys

    from serve_helpers import free_port

    port = free_port()
    env = {**os.environ, "LMFORGE_API_KEY": KEY, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lmforge", "serve", str(tiny_model_dir), "--port", str(port), "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            assert proc.poll() is None and time.monotonic() - t0 < 120, "lmforge serve did not start"
            try:
                r = httpx.get(f"{url}/v1/models", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert r.status_code == 401
        ok = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert ok.json()["data"][0]["id"] == tiny_model_dir.name
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in out and "Traceback" not in out
