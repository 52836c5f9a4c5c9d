"""uvicorn's sans-I/O WebSocket protocol, with closing made safe against clients that stop reading.

uvicorn's `websockets-sansio` protocol (the websockets library's `ServerProtocol` under thin
asyncio glue) costs no task per connection and enforces `ws_max_size` with close code 1009. Its
closing paths assume a well-behaved peer: one that keeps reading, and that stops sending when
told. Slow, dead and oversized-frame clients are exactly the ones that do not; this subclass
changes only those paths:

- An app-initiated close waits for the transport to become writable first, so closing a client
  whose socket buffer is full would wait forever. Here the close frame is written at once and the
  TCP connection is aborted if the closing handshake has not finished after `close_timeout`.
- Its close timer calls `transport.close()`, which flushes the send buffer first and so never
  completes for a peer that does not read; here the timer resets the connection, dropping
  what the kernel still buffers for it too.
- Server shutdown closes with 1012 (service restart) and the keepalive timeout half-closes;
  here shutdown sends 1001 (going away) and both end in an abort when the peer is silent.
- On a protocol error (an oversized frame) it closes the socket with the rest of the frame
  unread, so the kernel may reset the connection before the 1009 close frame arrives; here the
  gateway keeps reading (and discarding) until the client closes, as websockets itself does.

(It also records that a denial response completed the handshake, which uvicorn forgets and
then logs an error for every 401.)

The integration tests (slow reader, shutdown, oversized frames) pin this behaviour, so a uvicorn
upgrade that changes these internals fails there first.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from contextlib import suppress
from typing import Any, ClassVar

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from gateway.close_codes import CLOSINGS, CloseCode
from gateway.metrics import DisconnectReason

DEFAULT_CLOSE_TIMEOUT_SECONDS = 5.0


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    close_timeout_seconds: ClassVar[float] = DEFAULT_CLOSE_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = self.close_timeout_seconds

    def _open(self) -> bool:
        """Whether the handshake completed into a WebSocket that has not started closing."""
        return (
            self.handshake_complete
            and self.initial_response is None
            and not self.close_sent
            and not self.disconnected
        )

    def _start_closing(self, code: int, reason: str, *, app_code: int | None = None) -> None:
        """Write a close frame now (even past a full buffer) and abort if no answer comes."""
        if self.transport.is_closing():
            return
        try:
            self.conn.send_close(code, reason)
        except InvalidState as error:  # the peer's close arrived first
            raise ClientDisconnected() from error
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": app_code or code, "reason": reason}
        )
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            # Keep reading, so the peer's closing frame (and nothing else) is seen.
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self._abort)

    def _abort(self) -> None:
        self.close_timer = None
        self._reset()

    def _reset(self) -> None:
        """Drop the connection and everything buffered for it, here and in the kernel.

        `transport.abort()` frees only asyncio's buffer: closing the socket would still leave
        the kernel sending its own (megabytes, on a fast link) to a peer that does not read.
        SO_LINGER 0 makes the close a reset that discards that too.
        """
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.close" and self._open():
            self._start_closing(message.get("code", CloseCode.NORMAL), message.get("reason") or "")
            return
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # A denial response (401 before the upgrade) completes the handshake too; uvicorn
            # does not record that and logs "returned without completing handshake" for it.
            self.handshake_complete = True

    def shutdown(self) -> None:
        if not self.handshake_complete or self.initial_response is not None:
            super().shutdown()  # mid-handshake or a denial response: uvicorn's own handling
            return
        self.stop_keepalive()
        if self._open():
            shutdown = CLOSINGS[DisconnectReason.SHUTDOWN]
            self._start_closing(shutdown.code, shutdown.text, app_code=CloseCode.SERVICE_RESTART)
        # Already closing: the close timer ends it (aborting a silent peer).

    def handle_parser_exception(self) -> None:
        """A protocol error (an oversized frame: 1009): close, but keep reading until EOF.

        uvicorn closes the socket at once, with the rest of the offending frame unread; the
        kernel then answers with a reset that can overtake the close frame, and the client
        never learns the code. As the websockets library itself does: send the close frame and
        EOF, discard what still arrives, and let the client close (or abort after a timeout).
        """
        if self.close_sent:
            return  # every later read reports the same parser error; it is handled once
        assert self.conn.close_sent is not None
        code, reason = self.conn.close_sent.code, self.conn.close_sent.reason
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self._abort)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        # No pong in time: the peer is gone or not reading; its unsent buffer goes now.
        self._reset()


def protocol_class(close_timeout_seconds: float) -> type[asyncio.Protocol]:
    """The protocol class to hand to uvicorn (`ws=`), with this close timeout."""
    return type(
        "GatewayWebSocketProtocol",
        (GatewayWebSocketProtocol,),
        {"close_timeout_seconds": close_timeout_seconds},
    )
