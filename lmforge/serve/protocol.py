"""The OpenAI request bodies lmforge serves, and how one becomes a ``Job``: the prompt (plain text, or chat
messages through the model's chat template) as ids with BOS first, as ``lmforge generate`` makes them; the
budget capped at the model's positions; ``response_format`` as lmforge's JSON constraint.

lmforge's own settings ride as extra body fields (``extra_body=`` in the ``openai`` client):
``strategy`` (``sample`` | ``greedy`` | ``least_likely``), ``well_formed`` (least-likely: text tokens only)
and ``top_k``.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from lmforge.core.errors import LmforgeError, first_line
from lmforge.generate import GenerationSettings, prompt_ids
from lmforge.generate.constrained import check_schema
from lmforge.serve.engine import Limits, ServeError


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: Optional[dict] = None
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = None
    response_format: Optional[dict] = None
    user: Optional[str] = None
    # lmforge's own
    strategy: Literal["sample", "greedy", "least_likely"] = "sample"
    well_formed: bool = True
    top_k: Optional[int] = Field(None, ge=1)


class CompletionRequest(_Request):
    prompt: Union[str, list[str]]
    logprobs: Optional[int] = Field(None, ge=0, le=20)
    echo: bool = False
    max_tokens: Optional[int] = Field(16, ge=1)  # the OpenAI default for completions


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: Optional[Union[str, list[dict]]] = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: the text ones, joined
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(_Request):
    messages: list[Message] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)
    max_completion_tokens: Optional[int] = Field(None, ge=1)


def schema_of(response_format: Optional[dict]):
    """``response_format`` as ``GenerationSettings.json_schema``: None, ``"any"`` or a checked schema."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return "any"
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            raise ServeError(400, "response_format json_schema needs json_schema.schema", param="response_format")
        try:
            return check_schema(schema, "response_format.json_schema.schema")
        except LmforgeError as e:
            raise ServeError(400, str(e), param="response_format") from None
    raise ServeError(
        400, f"unknown response_format type {kind!r}: text, json_object or json_schema", param="response_format"
    )


def chat_prompt(tokenizer, messages: list[dict]) -> str:
    """The conversation through the tokenizer's chat template, ready for the assistant's turn."""
    if not getattr(tokenizer, "chat_template", None):
        raise ServeError(400, "this model has no chat template; use /v1/completions", param="messages")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as e:  # a template's raise_exception (an unsupported role) or a Jinja error
        raise ServeError(400, f"the chat template refused the messages: {first_line(e)}", param="messages") from None


def prompt_rows(tokenizer, texts: list[str], limits: Limits, max_positions: Optional[int]) -> list[list[int]]:
    """Each prompt's ids (BOS first), refused when longer than the server's bound or the model's positions."""
    rows = prompt_ids(tokenizer, texts)
    bound = min(limits.max_prompt_tokens, (max_positions - 1) if max_positions else limits.max_prompt_tokens)
    for ids in rows:
        if len(ids) > bound:
            raise ServeError(
                400,
                f"the prompt is {len(ids)} tokens; this server takes at most {bound}",
                param="prompt",
                code="context_length_exceeded",
            )
    return rows


def settings_of(
    req: _Request, max_tokens: Optional[int], limits: Limits, prompt_lens, max_positions
) -> GenerationSettings:
    """The request's decoding settings; the budget is bounded by the server and the model's positions."""
    if req.n > limits.max_n:
        raise ServeError(400, f"n is {req.n}; this server returns at most {limits.max_n} choices", param="n")
    wanted = max_tokens if max_tokens is not None else limits.max_tokens
    if wanted > limits.max_tokens:
        raise ServeError(
            400, f"max_tokens is {wanted}; this server allows at most {limits.max_tokens}", param="max_tokens"
        )
    if max_positions:
        wanted = min(wanted, max_positions - max(prompt_lens))
    return GenerationSettings(
        max_new_tokens=wanted,
        temperature=req.temperature,
        top_k=req.top_k,
        top_p=req.top_p if req.top_p < 1 else None,
        seed=req.seed,
        strategy="greedy" if req.strategy == "sample" and req.temperature == 0 else req.strategy,
        well_formed=req.well_formed,
        json_schema=schema_of(req.response_format),
    )


def stops_of(stop) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > 4:
        raise ServeError(400, "at most 4 stop sequences", param="stop")
    return tuple(s for s in stops if s)
