"""Clients for the server fault tests: well-behaved ones (``completion``) and raw sockets that misbehave at
the byte level (stall, trickle, leave, never read), and what a process holds (threads, open files, memory)."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx

PROMPTS = ["Le vent se lève", "The sea is calm", "Shall I compare", "Demain, dès l'aube"]
# least likely text token at each step: deterministic and never an end-of-sequence, so it runs its whole budget
LONG = {"model": "tiny", "prompt": "Le vent", "max_tokens": 1200, "n": 2, "temperature": 0, "strategy": "least_likely"}


def greedy(prompt: str, **kw) -> dict:
    return {"model": "tiny", "prompt": prompt, "max_tokens": 12, "temperature": 0, **kw}


def wait_until(ok, seconds: float, what: str) -> float:
    t0 = time.monotonic()
    while not ok():
        assert time.monotonic() - t0 < seconds, what
        time.sleep(0.02)
    return time.monotonic() - t0


def completion(url: str, body: dict, timeout: float = 60) -> str:
    r = httpx.post(f"{url}/v1/completions", json=body, timeout=timeout)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def raw(port: int, body: bytes, declared: int, path: str = "/v1/completions", rcvbuf: int = 0) -> socket.socket:
    """A connection that has sent the headers (Content-Length ``declared``) and ``body``, and nothing else."""
    sock = socket.socket()
    if rcvbuf:  # a small receive window: the server's writes back up soon once this client stops reading
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def until_closed(sock: socket.socket, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not within ``seconds``)."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:  # cut off: what it still had to read is gone
        pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open past {seconds} s; got {data[:200]!r}") from None
    finally:
        sock.close()
    return data


def error_of(data: bytes, status: int) -> dict:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), data[:300]
    error = json.loads(body)["error"]
    assert set(error) >= {"message", "type", "param", "code"} and len(error["message"].splitlines()) == 1
    return error


BODY = json.dumps(greedy(PROMPTS[1])).encode()


def trickle(sock: socket.socket, data: bytes, every: float) -> threading.Event:
    """Sends ``data`` a byte every ``every`` seconds on a thread, until the server closes or the event is set."""
    stop = threading.Event()

    def run():
        for b in data:
            if stop.wait(every):
                return
            try:
                sock.send(bytes([b]))
            except OSError:
                return

    threading.Thread(target=run, daemon=True).start()
    return stop


def ask_raw(port: int, body: bytes) -> bytes:
    """One raw request with ``Connection: close``, and the whole answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return until_closed(sock, 30)


def process(pid: int) -> dict:
    """Threads, open files and resident memory (MiB) of a process, from /proc."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    files = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return {"threads": int(status["Threads"]), "files": files, "rss": int(status["VmRSS"].split()[0]) / 1024}
