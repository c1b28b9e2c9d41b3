"""A bound on request bodies, before any parsing: 413 past ``max_bytes``, whether or not the client said
how long the body is (a chunked upload is read up to the bound, then refused)."""

from __future__ import annotations

from collections.abc import Callable


class BodyLimit:
    """ASGI middleware: reads the whole body (at most ``max_bytes``) and hands it on, or answers 413."""

    def __init__(self, app, max_bytes: int, body: Callable[[int, str], bytes]):
        self.app, self.max_bytes, self.body = app, max_bytes, body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            part = message.get("body", b"")
            size += len(part)
            if size > self.max_bytes:
                return await self._refuse(send)
            chunks.append(part)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        payload = self.body(413, f"the request body is over this server's bound of {self.max_bytes} bytes")
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
