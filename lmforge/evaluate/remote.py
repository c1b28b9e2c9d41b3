"""Models behind an OpenAI-compatible API as ``lmforge eval`` models: ``openai:MODEL@BASE_URL``.

    lmforge eval runs/cantos openai:cantos@http://127.0.0.1:8000/v1 --task examples/cantos/task.yaml

The key comes from ``OPENAI_API_KEY`` (none needed for a server without one); without ``@BASE_URL`` the
client's own default applies (``OPENAI_BASE_URL``, else OpenAI). Answers are greedy (temperature 0) from
``/v1/completions``, JSON-constrained through ``response_format`` when asked, as local models' are.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from lmforge.core.errors import LmforgeError, first_line

PREFIX = "openai:"


def is_remote(name: str) -> bool:
    return name.startswith(PREFIX)


def parse_remote(name: str) -> tuple[str, Optional[str]]:
    """``openai:MODEL@BASE_URL`` -> (MODEL, BASE_URL); the URL is what follows the last ``@http``."""
    rest = name[len(PREFIX) :]
    at = rest.rfind("@http")
    model, url = (rest[:at], rest[at + 1 :]) if at >= 0 else (rest, None)
    if not model:
        raise LmforgeError(f"{name}: no model name (openai:MODEL@BASE_URL)")
    return model, url


def byte_budget(references: list[str]) -> int:
    """A budget that fits every reference under any byte-level tokenizer (a token is at least one byte)."""
    return max(len(r.encode("utf-8")) for r in references) + 16


class RemoteModel:
    """A served model: greedy completions of many prompts, ``workers`` requests at a time."""

    def __init__(self, name: str, workers: int = 8, timeout: float = 300.0):
        try:
            import openai
        except ImportError:
            raise LmforgeError(
                f"{name}: remote models need the openai package (pip install 'lmforge[remote]')"
            ) from None
        self.name = name
        self.model, url = parse_remote(name)
        self.errors = openai.OpenAIError
        key = os.environ.get("OPENAI_API_KEY") or "none"  # a local server without a key accepts any
        self.client = openai.OpenAI(base_url=url, api_key=key, timeout=timeout, max_retries=2)
        self.workers = workers

    def complete(self, prompts: list[str], max_tokens: int, json_schema=None) -> list[str]:
        """``json_schema``: None (free), ``"any"`` (any JSON) or a schema, as ``GenerationSettings`` takes it."""
        extra = {}
        if json_schema == "any":
            extra["response_format"] = {"type": "json_object"}
        elif json_schema is not None:
            extra["response_format"] = {"type": "json_schema", "json_schema": {"name": "task", "schema": json_schema}}

        def one(prompt: str) -> str:
            try:
                r = self.client.completions.create(
                    model=self.model, prompt=prompt, max_tokens=max_tokens, temperature=0, extra_body=extra or None
                )
            except self.errors as e:
                raise LmforgeError(f"{self.name}: {first_line(e)}") from None
            return r.choices[0].text

        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(one, prompts))
