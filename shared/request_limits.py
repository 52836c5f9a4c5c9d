"""Request size limits at the HTTP edge, before any route or authentication work (API.md Limits).

Ferry never proxies media bytes, so every request body is small JSON: one over
`MAX_REQUEST_BYTES` gets 413 `request_too_large` without being read in full, and oversized
headers (a 1 MB `Authorization`, say) get 431 `request_headers_too_large` before the bearer token
is parsed. Internal routes (`/internal/...`) carry fan-out batches that may be larger: callers
presenting the internal token (one constant-time comparison) are not limited. A declared
`Content-Length` is judged at once; a chunked body is counted as it streams and buffered (never
more than the limit) so the app sees it only once it is known to fit.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_REQUEST_BYTES = 65_536
# Browsers send a few KiB; a JWT is well under 2 KiB. Above this nothing legitimate arrives.
DEFAULT_MAX_HEADER_BYTES = 16_384


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of an oversized body is never read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestLimitsMiddleware:
    """Pure ASGI: 431 for oversized headers (HTTP and WebSocket handshakes), 413 for bodies."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        internal_token: str | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.internal_token = internal_token.encode() if internal_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        header_bytes = sum(len(name) + len(value) + 4 for name, value in headers)
        if header_bytes > self.max_header_bytes:
            if scope["type"] == "websocket":
                # Before accept: ASGI turns a close into a 403 refusal of the handshake.
                await send({"type": "websocket.close", "code": 1008})
                return
            await _refuse(
                send,
                431,
                "request_headers_too_large",
                f"request headers exceed {self.max_header_bytes} bytes",
            )
            return
        if scope["type"] == "websocket" or self._trusted_internal(scope, headers):
            await self.app(scope, receive, send)
            return
        declared = _content_length(headers)
        if declared is not None:
            if declared > self.max_body_bytes:
                await self._too_large(send)
                return
            # h11/httptools deliver exactly the declared length: nothing more to count.
            await self.app(scope, receive, send)
            return
        if not any(name.lower() == b"transfer-encoding" for name, _ in headers):
            await self.app(scope, receive, send)  # no body at all
            return
        buffered = await self._read_bounded(receive)
        if buffered is None:
            await self._too_large(send)
            return
        await self.app(scope, _replay(buffered, receive), send)

    def _trusted_internal(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.internal_token is None or not str(scope.get("path", "")).startswith("/internal/"):
            return False
        presented = next((v for n, v in headers if n.lower() == b"x-internal-token"), b"")
        return bool(presented) and hmac.compare_digest(presented, self.internal_token)

    async def _too_large(self, send: Send) -> None:
        await _refuse(
            send,
            413,
            "request_too_large",
            f"request bodies are limited to {self.max_body_bytes} bytes",
        )

    async def _read_bounded(self, receive: Receive) -> list[Message] | None:
        """The body's messages, or None as soon as their total passes the limit."""
        messages: list[Message] = []
        total = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # a disconnect: let the app see it
            total += len(message.get("body", b""))
            if total > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                return messages


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
