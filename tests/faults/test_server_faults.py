"""``lmforge serve`` under faults, on a free 127.0.0.1 port with a tiny random model built here: a client that
stalls in its headers, one that sends its headers and stalls (or trickles) its body, an oversize body, one that
sends half a body and leaves, one that leaves in the middle of a stream, one that opens a stream and never
reads, a burst past the queue bound, a decode past the time limit. After each the server answers a normal
request as before and promptly, holds no engine slot, connection or thread for the faulty client, batches
again, and logged no traceback; where an answer can still be sent it is an OpenAI-style error (408, 413, 400,
429, 504). ``test_serve_command_faults.py`` runs the same faults against the real ``lmforge serve`` command
and reads its log and its process."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from serving import BODY, LONG, PROMPTS, ask_raw, completion, error_of, greedy, raw, trickle, until_closed, wait_until  # noqa: E402

from tests.serve_helpers import free_port  # noqa: E402

LIMITS = dict(
    max_tokens=1200,
    max_n=16,
    max_prompt_tokens=64,
    max_body_bytes=4000,
    max_queue=4,
    max_batch=16,
    timeout_s=30.0,
    body_timeout_s=1.0,
)


class Records(logging.Handler):
    """Every warning or error uvicorn logs (an exception in the app arrives here with its traceback)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@dataclass
class Served:
    url: str
    port: int
    engine: object
    server: object  # uvicorn.Server: its open connections
    records: Records
    reference: dict = field(default_factory=dict)
    threads: int = 0
    long_s: float = 0.0  # a LONG request decoded whole

    def connections(self) -> int:
        return len(self.server.server_state.connections)


@pytest.fixture(scope="module")
def served(tiny_tokenizer, one_thread):
    from lmforge.core.config import ModelConfig
    from lmforge.model import build_model
    from lmforge.serve import Engine, Limits
    from lmforge.serve.app import create_app
    from lmforge.serve.server import http_server

    # 2048 positions: a long answer takes seconds to decode and is megabytes of stream events
    model = build_model(ModelConfig(preset="tiny", context=2048), tiny_tokenizer, seed=0)
    engine = Engine(model, tiny_tokenizer, Limits(**LIMITS))
    records = Records()
    logging.getLogger("uvicorn").addHandler(records)
    port = free_port()
    # as lmforge serve runs it; no logging config: uvicorn would bind its handlers to a test capture's stderr
    server = http_server(create_app(engine, "tiny"), engine, port=port, log_level="warning", log_config=None)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the test server did not start")
    s = Served(f"http://127.0.0.1:{port}", port, engine, server, records)
    try:
        for p in PROMPTS:
            s.reference[p] = completion(s.url, greedy(p))
        t0 = time.monotonic()
        long = httpx.post(f"{s.url}/v1/completions", json=LONG, timeout=120).json()
        s.long_s = time.monotonic() - t0
        assert [c["finish_reason"] for c in long["choices"]] == ["length", "length"]
        s.threads = threading.active_count()
        yield s
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()
        logging.getLogger("uvicorn").removeHandler(records)


def healthy(s: Served, capfd) -> None:
    """The server after a fault: nothing of the faulty client held, the same answers, promptly, batched."""
    wait_until(lambda: s.engine._load == 0, 15, "an engine slot stayed taken")
    t0 = time.monotonic()
    assert completion(s.url, greedy(PROMPTS[0])) == s.reference[PROMPTS[0]]
    assert time.monotonic() - t0 < 10
    before, got = len(s.engine.batches), {}
    barrier = threading.Barrier(len(PROMPTS))

    def ask(p):
        barrier.wait()
        got[p] = completion(s.url, greedy(p))

    threads = [threading.Thread(target=ask, args=(p,)) for p in PROMPTS]  # as many as the queue holds
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == s.reference  # every one let in: no slot leaked
    assert max(s.engine.batches[before:]) > 1  # and decoded together again
    wait_until(lambda: s.connections() == 0, 10, "a connection stayed open")
    assert threading.active_count() <= s.threads
    bad = [r for r in s.records.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]
    assert "Traceback" not in capfd.readouterr().err


# ---- the faults ----------------------------------------------------------------------------------------


def test_a_stalled_or_trickled_body_gets_408_and_others_are_served_meanwhile(served, capfd):
    stalled = [raw(served.port, BODY[:20], len(BODY)) for _ in range(6)]
    trickled = raw(served.port, BODY[:5], len(BODY))
    stop = trickle(trickled, BODY[5:-1], 0.2)  # each read gets a byte; the body never ends in time
    assert completion(served.url, greedy(PROMPTS[2])) == served.reference[PROMPTS[2]]  # not held up meanwhile
    limit = LIMITS["body_timeout_s"]
    for sock in [*stalled, trickled]:
        error = error_of(until_closed(sock, limit + 10), 408)
        assert error["type"] == "timeout_error" and f"{limit:g} s" in error["message"]
    stop.set()
    healthy(served, capfd)


def test_an_oversize_body_gets_413_and_its_connection_closed(served, capfd):
    big = json.dumps(greedy("x" * 2 * LIMITS["max_body_bytes"])).encode()
    declared = raw(served.port, big[:100], len(big))  # refused on its Content-Length alone
    stop = trickle(declared, big[100:], 0.2)  # the client goes on sending: the connection must not stay open
    error_of(until_closed(declared, 10), 413)
    stop.set()
    chunked = socket.create_connection(("127.0.0.1", served.port))  # no length said: read up to the bound
    chunked.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunked.sendall(
        b"".join(b"%x\r\n%s\r\n" % (len(big[i : i + 1000]), big[i : i + 1000]) for i in range(0, 5000, 1000))
    )
    stop = trickle(chunked, b"1\r\nx\r\n" * 100, 0.2)
    error_of(until_closed(chunked, 10), 413)
    stop.set()
    healthy(served, capfd)


def test_half_a_body_then_gone(served, capfd):
    sock = raw(served.port, BODY[: len(BODY) // 2], len(BODY))
    sock.close()  # gone for good: there is nobody to answer
    sock = raw(served.port, BODY[: len(BODY) // 2], len(BODY))
    sock.shutdown(socket.SHUT_WR)  # half closed: the body can never be complete
    assert until_closed(sock, 10) == b""
    cut = BODY[: len(BODY) // 2]  # a body complete by its length, cut in the middle of the JSON
    error = error_of(ask_raw(served.port, cut), 400)
    assert "not valid JSON" in error["message"]
    healthy(served, capfd)


def test_a_client_that_leaves_mid_stream_frees_its_slot_at_once(served, capfd):
    for extra in ({}, {"logprobs": 3}, {"stream_options": {"include_usage": True}}):
        with httpx.stream("POST", f"{served.url}/v1/completions", json={**LONG, **extra, "stream": True}) as r:
            events = (line for line in r.iter_lines() if line)
            for _ in range(3):
                assert next(events).startswith("data: ")
        # the decode stops at its next token, long before the whole answer would have been decoded
        assert wait_until(lambda: served.engine._load == 0, 15, "the left stream kept decoding") < served.long_s / 2
    healthy(served, capfd)


def test_a_client_that_never_reads_its_stream_is_dropped(served, capfd):
    stall = 2.0
    served.engine.limits.timeout_s = stall
    try:
        # 16 choices with 20 alternatives per token: megabytes a second, past what the sockets buffer (~4 MiB)
        body = json.dumps({**LONG, "n": 16, "logprobs": 20, "stream": True}).encode()
        sock = raw(served.port, body, len(body), rcvbuf=4096)
        # past the time limit the decode ends; the writes that cannot go out then keep nothing but the socket
        wait_until(lambda: served.engine._load == 0, stall + 15, "the unread stream kept its slot")
        assert completion(served.url, greedy(PROMPTS[3])) == served.reference[PROMPTS[3]]  # not held up by it
        # and after the time limit with its writes backed up, the socket is let go
        wait_until(lambda: served.connections() == 0, 2 * stall + 15, "the unread stream kept its connection")
        until_closed(sock, 10)
    finally:
        served.engine.limits.timeout_s = LIMITS["timeout_s"]
    healthy(served, capfd)


def test_a_burst_past_the_queue_bound_gets_429_for_the_rest(served, capfd):
    n = 4 * LIMITS["max_queue"]
    body = {**LONG, "max_tokens": 60, "n": 1}
    want = completion(served.url, body)
    barrier, answers = threading.Barrier(n), []

    def ask(i):
        barrier.wait()
        stream = i % 2 == 1
        r = httpx.post(f"{served.url}/v1/completions", json={**body, "stream": stream}, timeout=60)
        if r.status_code == 429:
            answers.append(("busy", r.json()["error"]))
        elif stream:
            events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]", r.text[-300:]
            answers.append(("ok", "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])))
        else:
            answers.append(("ok", r.json()["choices"][0]["text"]))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy = [a for kind, a in answers if kind == "busy"]
    done = [a for kind, a in answers if kind == "ok"]
    assert len(busy) + len(done) == n and busy and len(done) >= LIMITS["max_queue"]
    assert all(e["type"] == "rate_limit_error" for e in busy)
    assert all(text == want for text in done)  # the ones let in answered whole and right
    healthy(served, capfd)


def test_a_decode_past_the_time_limit_is_504_and_frees_its_slot(served, capfd):
    limit = served.long_s / 4  # the long request cannot finish in time
    served.engine.limits.timeout_s = limit
    try:
        t0 = time.monotonic()
        r = httpx.post(f"{served.url}/v1/completions", json=LONG, timeout=60)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert time.monotonic() - t0 < limit + 5
        with httpx.stream("POST", f"{served.url}/v1/completions", json={**LONG, "stream": True}, timeout=60) as r:
            events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert r.status_code == 200 and json.loads(events[-1])["error"]["code"] == "timeout"
        assert len(events) > 1  # some text went out before the limit
    finally:
        served.engine.limits.timeout_s = LIMITS["timeout_s"]
    healthy(served, capfd)


def test_a_client_that_stalls_in_its_headers_is_closed(served, capfd):
    silent = socket.create_connection(("127.0.0.1", served.port))  # connects and says nothing
    half = socket.create_connection(("127.0.0.1", served.port))
    half.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # headers that never end
    dripping = socket.create_connection(("127.0.0.1", served.port))
    stop = trickle(dripping, b"POST /v1/completions HTTP/1.1\r\n" + b"X-Slow: yes\r\n" * 40, 0.1)
    assert completion(served.url, greedy(PROMPTS[2])) == served.reference[PROMPTS[2]]  # not held up meanwhile
    for sock in (silent, half, dripping):  # no request to answer: closed after the body's time limit
        assert until_closed(sock, LIMITS["body_timeout_s"] + 10) == b""
    stop.set()
    healthy(served, capfd)


def test_a_connection_closed_with_bytes_unsent_is_cut_off_after_the_time_limit():
    """asyncio's close() waits forever for bytes a client never reads; the server's transports give them the
    request time limit (here 0.5 s), then cut the connection."""
    import asyncio

    from lmforge.serve.limits import TimedClose

    async def main() -> float:
        loop = asyncio.get_running_loop()
        lost = loop.create_future()

        class Writer(asyncio.Protocol):
            def connection_made(self, transport):
                transport = TimedClose(transport, lambda: 0.5)
                transport.write(b"x" * (32 << 20))  # past what the sockets buffer: most of it stays unsent
                transport.close()

            def connection_lost(self, exc):
                if not lost.done():
                    lost.set_result(time.monotonic())

        server = await loop.create_server(Writer, "127.0.0.1", 0)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.setblocking(False)
        await loop.sock_connect(client, server.sockets[0].getsockname())
        t0 = time.monotonic()
        try:
            return await asyncio.wait_for(lost, 10) - t0  # the client reads nothing
        finally:
            client.close()
            server.close()

    assert 0.4 < asyncio.run(main()) < 5
