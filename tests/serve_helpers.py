"""A tiny chat model and an lmforge server on a free local port, for the serving tests."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_model_dir(out, tokenizer_dir):
    """A random tiny Llama whose tokenizer has ChatML's markers and template (as chat fine-tuning leaves it)."""
    from tokenizers import AddedToken

    from lmforge.core.config import ModelConfig
    from lmforge.data.chat import CHATML
    from lmforge.model import build_model, load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")])
    tok.chat_template = CHATML
    model = build_model(ModelConfig(preset="tiny"), tok, seed=1)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@contextmanager
def running(app):
    """``app`` under uvicorn on a thread, at ``http://127.0.0.1:PORT``; stopped on exit."""
    import uvicorn

    port = free_port()
    # no logging config: uvicorn would bind its handlers to the stderr of the moment (a test capture, closed later)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if time.monotonic() - t0 > 30 or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
