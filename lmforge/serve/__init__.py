"""An OpenAI-compatible server over lmforge's one generation path: ``serve(...)`` runs it, ``create_app``
builds the FastAPI app over a decoding ``Engine`` (the batching worker)."""

from lmforge.serve.engine import Engine, Limits, ServeError
from lmforge.serve.server import load_engine, serve

__all__ = ["Engine", "Limits", "ServeError", "load_engine", "serve"]
