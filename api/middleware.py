"""ASGI middleware that bounds the request body while it streams in.

Starlette spools uploaded files to disk with no total cap, so the limit has to be
enforced below the framework: a declared ``Content-Length`` above the limit is refused
before a byte of the body is read, and a body without one (chunked) is counted as it
arrives and refused as soon as it passes the limit. Either way the client gets a 413
problem document and the connection is closed; the body is never buffered whole.
"""

from __future__ import annotations

import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimitMiddleware"]


class _BodyTooLargeError(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_body_bytes`` with 413."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            # The HTTP server has already rejected a malformed Content-Length.
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                await self._refuse(scope, send)
                return
        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                return  # the framework's own error response is replaced by our 413
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        with contextlib.suppress(_BodyTooLargeError):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not response_started:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        status, code, title = 413, "payload_too_large", "Payload too large"
        detail = (
            f"the request body exceeds the limit of {self.max_body_bytes} bytes "
            "(PRIVAUDIT_MAX_BODY_BYTES); send less, or upload in parts"
        )
        body = json.dumps(
            {
                "type": f"/v1/errors/{code}",
                "title": title,
                "status": status,
                "detail": detail,
                "code": code,
                "instance": scope.get("path", ""),
                "limit_bytes": self.max_body_bytes,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
