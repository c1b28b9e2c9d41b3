"""The real ``lmforge serve`` command under the faults of ``test_server_faults.py``: its log shows no traceback,
and after them the process holds no more threads or open files than before, and no stream's memory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from serving import BODY, LONG, PROMPTS, ask_raw, completion, error_of, greedy, process, raw, until_closed, wait_until  # noqa: E402

from tests.serve_helpers import free_port  # noqa: E402


@pytest.mark.slow
def test_the_lmforge_serve_command_under_every_fault(tmp_path, tiny_tokenizer):
    from lmforge.core.config import ModelConfig
    from lmforge.model import build_model

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to read the server's threads and open files")
    folder = tmp_path / "tiny"
    build_model(ModelConfig(preset="tiny", context=2048), tiny_tokenizer, seed=0).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    port, limit = free_port(), 1.5
    cmd = [sys.executable, "-m", "lmforge", "serve", str(folder), "--port", str(port), "--device", "cpu"]
    cmd += ["--name", "tiny", "--threads", "1", "--max-queue", "4", "--max-tokens", "1200", "--max-n", "16"]
    cmd += ["--max-body-bytes", "4000", "--timeout", str(limit), "--body-timeout", "1"]
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:

        def up():
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                return httpx.get(f"{url}/v1/models", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 120, "lmforge serve did not start")
        reference = {p: completion(url, greedy(p)) for p in PROMPTS}

        def normal():
            t0 = time.monotonic()
            assert completion(url, greedy(PROMPTS[0])) == reference[PROMPTS[0]]
            assert time.monotonic() - t0 < 10

        with httpx.stream("POST", f"{url}/v1/completions", json={**greedy(PROMPTS[1]), "stream": True}) as r:
            assert list(r.iter_lines())[-2] == "data: [DONE]"
        base = process(proc.pid)

        # a stalled body, no headers, half a body, a truncated JSON body
        socks = [raw(port, BODY[:20], len(BODY)) for _ in range(6)]
        silent = socket.create_connection(("127.0.0.1", port))  # not even headers
        normal()
        for sock in socks:
            assert error_of(until_closed(sock, 15), 408)["type"] == "timeout_error"
        assert until_closed(silent, 15) == b""
        raw(port, BODY[:30], len(BODY)).close()
        half = raw(port, BODY[:30], len(BODY))
        half.shutdown(socket.SHUT_WR)
        assert until_closed(half, 10) == b""
        assert "not valid JSON" in error_of(ask_raw(port, BODY[:30]), 400)["message"]
        normal()
        # streams left in the middle, and one never read
        for _ in range(3):
            with httpx.stream("POST", f"{url}/v1/completions", json={**LONG, "stream": True}) as r:
                assert next(line for line in r.iter_lines() if line).startswith("data: ")
        body = json.dumps({**LONG, "n": 16, "logprobs": 20, "stream": True}).encode()
        unread = raw(port, body, len(body), rcvbuf=4096)
        wait_until(lambda: process(proc.pid)["files"] <= base["files"] + 1, 2 * limit + 20, "the unread stream stayed")
        unread.close()
        normal()
        # a burst past the queue bound, and a decode past the time limit
        codes = []
        barrier = threading.Barrier(16)

        def ask():
            barrier.wait()
            body = {**LONG, "max_tokens": 60, "n": 1}
            codes.append(httpx.post(f"{url}/v1/completions", json=body, timeout=60).status_code)

        threads = [threading.Thread(target=ask) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(codes) == {200, 429}, codes
        r = httpx.post(f"{url}/v1/completions", json={**LONG, "n": 16, "logprobs": 20}, timeout=60)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        normal()

        wait_until(lambda: process(proc.pid)["files"] <= base["files"], 20, "a connection stayed open")
        after = process(proc.pid)
        assert after["threads"] <= base["threads"], (base, after)
        assert after["rss"] < base["rss"] + 100, (base, after)  # MiB: decoding buffers, not a held stream
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text and "Exception in ASGI" not in text, text[-3000:]
