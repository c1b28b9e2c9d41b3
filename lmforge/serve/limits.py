"""Bounds on what one client may hold, in bytes and in time.

``BodyLimit``: a request body is read whole before any parsing, at most ``max_bytes`` (413 past it, whether or
not the client said how long the body is: a chunked upload is read up to the bound, then refused) and within
``timeout_s`` (408 past it: a client that sends its headers and then stalls or trickles its body). Either
refusal closes the connection, so the unread rest of the body cannot keep it open.

``stall_bound(limits)``: uvicorn's HTTP/1.1 protocol, with a client that stops reading (the server's writes
back up and stay so for the request time limit) cut off; closing would wait for the unread bytes to go out, forever.

``ClosingStream``: a streamed answer whose body iterator is closed as soon as the response ends, however it
ends, so the decoding job behind it is let go at once rather than whenever the generator is collected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

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


def stall_bound(limits: Limits) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol (``uvicorn.Config(http=...)``), cutting off a connection whose writes stay
    backed up for ``limits.timeout_s`` (read when they back up): the client stopped reading, and its answer is
    abandoned as if it had left."""

    class StallBound(H11Protocol):
        _stall: asyncio.TimerHandle | None = None

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._stall is None:
                self._stall = self.loop.call_later(limits.timeout_s, self.transport.abort)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._unstall()

        def connection_lost(self, exc) -> None:
            self._unstall()
            super().connection_lost(exc)

        def _unstall(self) -> None:
            if self._stall is not None:
                self._stall.cancel()
                self._stall = None

    return StallBound


class ClosingStream(StreamingResponse):
    """A ``StreamingResponse`` that closes its body iterator when the response ends (finished, failed, or the
    client gone while a write was under way)."""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
