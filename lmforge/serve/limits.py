"""Bounds on what one client may hold, in bytes and in time.

``BodyLimit``: a request body is read whole before any parsing, at most ``max_bytes`` (413 past it, whether or
not the client said how long the body is: a chunked upload is read up to the bound, then refused) and within
``timeout_s`` (408 past it: a client that sends its headers and then stalls or trickles its body). Either
refusal closes the connection, so the unread rest of the body cannot keep it open.

``bounded_protocol(limits)``: uvicorn's HTTP/1.1 protocol, with a client that does not finish its headers in
time closed, and one that stops reading its answer (the server's writes back up and stay so for the request
time limit, or bytes are left unsent at close) cut off; uvicorn would keep either connection forever.

``ClosingStream``: a streamed answer whose body iterator is closed as soon as the response ends, however it
ends, so the decoding job behind it is let go at once rather than whenever the generator is collected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import h11
from starlette.responses import StreamingResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

from lmforge.serve.engine import Limits


class BodyLimit:
    """ASGI middleware: reads the whole body (at most ``max_bytes``, within ``timeout_s``) and hands it on,
    or answers 413 / 408."""

    def __init__(self, app, max_bytes: int, timeout_s: float, body: Callable[[int, str], bytes]):
        self.app, self.max_bytes, self.timeout_s, self.body = app, max_bytes, timeout_s, body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        over = f"the request body is over this server's bound of {self.max_bytes} bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, 413, over)
        chunks, size, more = [], 0, True
        try:
            async with asyncio.timeout(self.timeout_s):  # the whole body, not each read: trickling does not help
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    part = message.get("body", b"")
                    size += len(part)
                    if size > self.max_bytes:
                        return await self._refuse(send, 413, over)
                    chunks.append(part)
                    more = message.get("more_body", False)
        except TimeoutError:
            return await self._refuse(send, 408, f"the request body did not arrive within {self.timeout_s:g} s")
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send, status: int, message: str) -> None:
        payload = self.body(status, message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),  # the rest of the body is never read: nothing more can follow on it
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()


def bounded_protocol(limits: Limits) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol (``uvicorn.Config(http=...)``) with bounds on slow clients, read from
    ``limits`` when they apply. A connection that has not sent a request's whole headers within
    ``body_timeout_s`` (of opening, or of its last answer) is closed; uvicorn would wait forever. One whose
    writes stay backed up for ``timeout_s`` is cut off: the client stopped reading, and its answer is
    abandoned as if it had left. A connection closed with bytes still unsent gets ``timeout_s`` for them to go
    out, then is cut off too (asyncio's close waits for them forever)."""

    class Bounded(H11Protocol):
        _stall: asyncio.TimerHandle | None = None
        _headers: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(TimedClose(transport, lambda: limits.timeout_s))
            self._await_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # a request's headers are in
                _cancel(self._headers)
                self._headers = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._await_headers()

        def _await_headers(self) -> None:
            _cancel(self._headers)
            self._headers = self.loop.call_later(limits.body_timeout_s, self._headers_late)

        def _headers_late(self) -> None:
            self._headers = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # no request yet: nothing to answer

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._stall is None:
                self._stall = self.loop.call_later(limits.timeout_s, self.transport.abort)

        def resume_writing(self) -> None:
            super().resume_writing()
            _cancel(self._stall)
            self._stall = None

        def connection_lost(self, exc) -> None:
            _cancel(self._stall)
            _cancel(self._headers)
            self._stall = self._headers = None
            super().connection_lost(exc)

    return Bounded


class TimedClose:
    """A transport whose ``close()`` leaves unsent bytes ``seconds()`` to go out before aborting it; the rest
    is the transport's own."""

    def __init__(self, transport: asyncio.Transport, seconds: Callable[[], float]):
        self._transport, self._seconds = transport, seconds

    def close(self) -> None:
        self._transport.close()
        if self._transport.get_write_buffer_size():  # aborting a transport already gone does nothing
            asyncio.get_running_loop().call_later(self._seconds(), self._transport.abort)

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class ClosingStream(StreamingResponse):
    """A ``StreamingResponse`` that closes its body iterator when the response ends (finished, failed, or the
    client gone while a write was under way)."""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
