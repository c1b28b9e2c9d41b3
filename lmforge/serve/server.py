"""``serve``: load a model, start the decoding worker, run the app under uvicorn until interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lmforge.core.errors import LmforgeError
from lmforge.generate.precision import check_dtype, decoding_model
from lmforge.model import load_model_and_tokenizer
from lmforge.serve.engine import Engine, Limits


def model_name(spec: str) -> str:
    """The name clients send as ``model``: a folder's or run's own name, a hub id as written."""
    p = Path(spec)
    return p.resolve().name if p.exists() else spec


def load_engine(
    spec: str,
    *,
    device: str = "auto",
    limits: Optional[Limits] = None,
    trust_remote_code: bool = False,
    dtype: str = "auto",
    compile: bool = False,
):
    """A run, a folder, an adapter or a hub id, loaded once and owned by a new ``Engine``; ``dtype``: decode
    with its weights cast to fp32, bf16 or fp16 (LoRA merged first; ``lmforge.generate.precision``);
    ``compile``: new tokens through one compiled graph (``lmforge.generate.compiled``)."""
    check_dtype(dtype)
    model, tokenizer = load_model_and_tokenizer(spec, device=device, trust_remote_code=trust_remote_code)
    limits = limits or Limits()
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        limits.max_prompt_tokens = min(limits.max_prompt_tokens, positions - 1)
    return Engine(decoding_model(model, dtype), tokenizer, limits, compile=compile)


def serve(
    spec: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: Optional[str] = None,
    name: Optional[str] = None,
    device: str = "auto",
    limits: Optional[Limits] = None,
    trust_remote_code: bool = False,
    log_level: str = "info",
    threads: Optional[int] = None,
    dtype: str = "auto",
    compile: bool = False,
) -> None:
    import torch

    from lmforge.serve.app import create_app

    if api_key is not None and not api_key.strip():
        raise LmforgeError("the API key is empty; give a non-empty --api-key or LMFORGE_API_KEY")
    if threads:  # small models on a busy CPU decode many times faster on one thread than on several
        torch.set_num_threads(threads)
    engine = load_engine(
        spec, device=device, limits=limits, trust_remote_code=trust_remote_code, dtype=dtype, compile=compile
    )
    app = create_app(engine, name or model_name(spec), api_key=api_key)
    try:
        http_server(app, engine, host=host, port=port, log_level=log_level).run()
    finally:
        engine.close()


def http_server(app, engine: Engine, *, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options):
    """A ``uvicorn.Server`` for ``app`` with the engine's bounds on slow clients (headers that do not arrive,
    an answer nobody reads); ``.run()`` serves until interrupted."""
    import uvicorn

    from lmforge.serve.limits import bounded_protocol  # fastapi and uvicorn: the serve extra

    config = uvicorn.Config(
        app, host=host, port=port, http=bounded_protocol(engine.limits), timeout_graceful_shutdown=5, **uvicorn_options
    )
    return uvicorn.Server(config)
