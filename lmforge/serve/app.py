"""The FastAPI app: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` (streamed as server-sent
events when asked) and the playground at ``/``.

Every error is an OpenAI-style JSON body (``{"error": {"message", "type", "param", "code"}}``): 400 for bad
input (FastAPI's 422 included), 401 without the right key, 404 for an unknown model or route, 408 for a body
that does not arrive in time, 413 for a body over the bound, 429 when the queue is full, 504 past the time
limit; never a traceback.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import time
import uuid
from importlib import resources
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from lmforge.serve.engine import Engine, Job, ServeError
from lmforge.serve.limits import BodyLimit, ClosingStream
from lmforge.serve.protocol import ChatRequest, CompletionRequest, chat_prompt, prompt_rows, settings_of, stops_of
from lmforge.serve.responses import Choices, chunk, completion_body


def create_app(engine: Engine, model_name: str, api_key: Optional[str] = None) -> FastAPI:
    """The app over a running ``Engine``; with ``api_key``, every ``/v1`` route wants ``Authorization: Bearer``."""
    app = FastAPI(title="lmforge", docs_url=None, redoc_url=None, openapi_url=None)
    tokenizer = copy.deepcopy(engine.tokenizer)  # the worker thread decodes with its own copy
    limits = engine.limits
    created = int(time.time())
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s, body=_error_bytes)

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, e: ServeError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        err = (e.errors() or [{}])[0]
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        msg = err.get("msg", "invalid request")
        if err.get("type") == "json_invalid":
            msg = "the body is not valid JSON"
        text = f"{'.'.join(loc)}: {msg}" if loc else msg
        return JSONResponse(ServeError(400, text, param=".".join(loc) or None).body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(ServeError(e.status_code, str(e.detail), kind).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception):
        return JSONResponse(ServeError(500, "internal error", "server_error").body(), status_code=500)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ServeError(
                401,
                "missing or wrong API key (Authorization: Bearer KEY)",
                "authentication_error",
                code="invalid_api_key",
            )

    def check_model(name: str) -> None:
        if name != model_name:
            raise ServeError(
                404,
                f"the model {name!r} does not exist; this server serves {model_name!r}",
                "not_found_error",
                param="model",
                code="model_not_found",
            )

    def model_card() -> dict:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "lmforge"}

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str, request: Request):
        authorize(request)
        check_model(name)
        return model_card()

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        authorize(request)
        check_model(req.model)
        if req.echo:
            raise ServeError(400, "echo is not supported", param="echo")
        texts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not texts:
            raise ServeError(400, "prompt is empty", param="prompt")
        return await _answer(req, texts, req.max_tokens, req.logprobs, "text_completion")

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request):
        authorize(request)
        check_model(req.model)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        top = (req.top_logprobs or 0) if req.logprobs else None
        return await _answer(
            req, [chat_prompt(tokenizer, messages)], req.max_completion_tokens or req.max_tokens, top, "chat.completion"
        )

    async def _answer(req, texts: list[str], max_tokens, top_logprobs, kind: str):
        rows = prompt_rows(tokenizer, texts, limits, engine.max_positions)
        settings = settings_of(req, max_tokens, limits, [len(r) for r in rows], engine.max_positions)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        job = Job(
            prompts=[r for r in rows for _ in range(req.n)],  # choice index = prompt * n + sample
            settings=settings,
            emit=lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev),
            stop=stops_of(req.stop),
            top_logprobs=top_logprobs,
            deadline=time.monotonic() + limits.timeout_s,
        )
        engine.submit(job)
        meta = {
            "id": f"{'chatcmpl' if kind != 'text_completion' else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": model_name,
        }
        choices = Choices(
            tokenizer, len(job.prompts), top_logprobs, kind, [len(t) for t in texts for _ in range(req.n)]
        )
        usage = {"prompt_tokens": sum(len(r) for r in rows) * req.n}
        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return ClosingStream(
                _sse(job, events, choices, meta, usage if include_usage else None),
                media_type="text/event-stream",
            )
        try:
            while not choices.all_done():
                ev = await _next(events, limits.timeout_s)
                if ev[0] == "error":
                    raise ev[1]
                choices.take(ev)
        finally:  # answered, failed or abandoned: the worker may drop what is left of the job
            job.cancelled.set()
        return completion_body(choices, meta, usage)

    async def _sse(job: Job, events: asyncio.Queue, choices: Choices, meta: dict, usage: Optional[dict]):
        try:
            if choices.kind != "text_completion":  # the role first, as OpenAI streams it
                for i in range(choices.n):
                    yield _data(chunk(meta, choices.kind, i, {"role": "assistant", "content": ""}, None, None))
            while not choices.all_done():
                ev = await _next(events, limits.timeout_s)
                if ev[0] == "error":
                    yield _data(ev[1].body())
                    return
                delta = choices.take(ev)
                if delta is not None:
                    yield _data(chunk(meta, choices.kind, *delta))
            if usage is not None:
                yield _data({**chunk(meta, choices.kind, None, None, None, None), "usage": choices.usage(usage)})
            yield "data: [DONE]\n\n"
        finally:  # the client went away, or we are done: either way the worker may drop this job
            job.cancelled.set()

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        page = resources.files("lmforge.serve").joinpath("playground.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("{{MODEL}}", json.dumps(model_name)))

    return app


async def _next(events: asyncio.Queue, timeout_s: float) -> tuple:
    """The worker's next event; never waits forever (the worker enforces the deadline, this is a backstop)."""
    try:
        return await asyncio.wait_for(events.get(), timeout=timeout_s + 30)
    except TimeoutError:
        return ("error", ServeError(504, "no answer from the decoder in time", "timeout_error", code="timeout"))


def _data(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _error_bytes(status: int, message: str) -> bytes:
    if status == 408:
        return json.dumps(ServeError(status, message, "timeout_error", code="request_timeout").body()).encode()
    return json.dumps(ServeError(status, message).body()).encode()
