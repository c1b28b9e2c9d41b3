"""A bounded load test of ``lmforge serve`` on 127.0.0.1: concurrent clients, each sending requests one after
another; latency percentiles, errors and generated tokens per second, with batching on and off.

    python benchmarks/serve_load.py                                   # 50 clients x 10 requests, 1m preset
    python benchmarks/serve_load.py --clients 8 --requests 2 --preset tiny   # a quick look

The model is a random ``--preset`` Llama with a BPE tokenizer trained on the embedded corpus (serving speed
does not depend on what the weights say; answers run to ``--max-tokens`` but for the rare EOS). Each mode
starts its own ``lmforge serve`` subprocess: batching on (``--max-batch`` rows decoded together) and off
(``--max-batch 1``, one request at a time). Prints a table and writes benchmarks/out/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine  # noqa: E402

PROMPTS = ["Le vent se lève", "The sea is calm tonight", "Shall I compare thee", "Demain, dès l'aube", "Je partirai"]


def build_model(out: Path, preset: str) -> Path:
    from lmforge.core.config import ModelConfig
    from lmforge.data.corpus import load_default_corpus
    from lmforge.model import build_model as build
    from lmforge.model.tokenizer import train_tokenizer

    folder = out / f"serve_model_{preset}"
    if not (folder / "config.json").is_file():
        tok = train_tokenizer([load_default_corpus()], vocab_size=512, out_dir=folder)
        build(ModelConfig(preset=preset), tok, seed=0).save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, max_batch: int, max_tokens: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "lmforge",
        "serve",
        str(folder),
        "--port",
        str(port),
        "--device",
        "cpu",
        "--max-batch",
        str(max_batch),
        "--max-queue",
        "1000",
        "--name",
        "bench",
        "--max-tokens",
        str(max_tokens),
        "--threads",
        str(threads),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if proc.poll() is not None:
            raise SystemExit(f"lmforge serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("lmforge serve did not start in 120 s")


async def client(http: httpx.AsyncClient, url: str, i: int, n: int, max_tokens: int, results: list) -> None:
    for k in range(n):
        body = {
            "model": "bench",
            "prompt": PROMPTS[(i + k) % len(PROMPTS)],
            "max_tokens": max_tokens,
            "temperature": 0.8,
        }
        t0 = time.perf_counter()
        try:
            r = await http.post(f"{url}/v1/completions", json=body)
            ok = r.status_code == 200
            tokens = r.json()["usage"]["completion_tokens"] if ok else 0
            err = None if ok else f"{r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as e:
            tokens, err = 0, f"{type(e).__name__}: {e}"
        results.append({"latency": time.perf_counter() - t0, "tokens": tokens, "error": err})


async def load(url: str, clients: int, requests: int, max_tokens: int) -> dict:
    results: list[dict] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http, url, i, requests, max_tokens, results) for i in range(clients)))
        wall = time.perf_counter() - t0
    lat = sorted(r["latency"] for r in results)
    errors = [r["error"] for r in results if r["error"]]
    tokens = sum(r["tokens"] for r in results)
    return {
        "requests": len(results),
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_s": statistics.median(lat),
        "p99_s": lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))],
        "completion_tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "requests_per_s": len(results) / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="1m")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=10, help="requests per client, one after another")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=64, help="rows decoded together with batching on")
    ap.add_argument("--threads", type=int, default=1, help="the server's CPU threads (1: steady on a shared machine)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    folder = build_model(OUT, args.preset)
    rows = {}
    for mode, max_batch in (("batching on", args.max_batch), ("batching off", 1)):
        proc, url = start_server(folder, max_batch, args.max_tokens, args.threads)
        try:
            rows[mode] = {
                "max_batch": max_batch,
                **asyncio.run(load(url, args.clients, args.requests, args.max_tokens)),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"{args.clients} clients x {args.requests} requests, max_tokens {args.max_tokens}, preset {args.preset}")
    print(f"{'mode':<14}{'requests':>9}{'errors':>8}{'p50 s':>8}{'p99 s':>8}{'tokens':>8}{'wall s':>8}{'tok/s':>8}")
    for mode, r in rows.items():
        print(
            f"{mode:<14}{r['requests']:>9}{r['errors']:>8}{r['p50_s']:>8.2f}{r['p99_s']:>8.2f}"
            f"{r['completion_tokens']:>8}{r['wall_s']:>8.1f}{r['tokens_per_s']:>8.1f}"
        )
    out = OUT / "serve_load.json"
    out.write_text(json.dumps({"args": vars(args), "machine": machine(), "modes": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
