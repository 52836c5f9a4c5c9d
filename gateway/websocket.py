"""The clients' WebSocket (`/v1/ws`): an `asyncio.Protocol` over the websockets library's
sans-I/O `ServerProtocol`, with no ASGI and no task per idle connection.

uvicorn serves HTTP (FastAPI) and hands every WebSocket upgrade to this class (its documented
`ws=` option: the class is constructed with `config`, `server_state` and `app_state`, given the
transport and fed the request head again). The lifespan publishes the `Gateway` in that state.

A connection's life:
- Handshake (one short task): the token (header, or `?token=` for browsers) is verified, the
  device is held locally and registered, and the Message Service is asked once for its pending
  messages, which admits the device too (403 `too_many_devices`). Only then the upgrade; a
  refusal is an HTTP answer with the contract's error body instead (401, 403, 404, 503).
  Registering before the fetch means a message stored meanwhile is either in the backlog or
  pushed live (held until the backlog is written, deduplicated): none is lost.
- Open: frames are handled as they arrive (`data_received`). A `ping` is answered inline; a
  `send`, `received` or `auth` starts one short task, at most `sends_in_flight_per_connection`
  at once: at the limit the socket stops being read, so TCP pushes back on a client that floods.
  Frames to the client are written to the transport at once; while its buffer is full they wait
  in the connection's bounded queue (`LocalConnection`), and a full queue closes with 1013.
  Keepalive pings and the token's expiry are timer handles, not tasks.
- Closing is made safe against clients that stop reading: the close frame is written at once
  (past a full buffer), and the TCP connection is reset (SO_LINGER 0: the kernel's buffer is
  dropped too) if the closing handshake has not finished after `close_timeout`. A protocol
  error (an oversized frame: 1009) half-closes and keeps reading (discarding) until the client
  closes, so the kernel never answers the unread rest with a reset that overtakes the 1009.
- Every end goes through `LocalConnection.close`/`ended` (the reason is the metric's label);
  the connection then leaves the local set and its registry row is deleted.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import socket
import struct
import time
import uuid
from collections.abc import Mapping
from contextlib import suppress
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qs

from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from gateway.close_codes import CloseCode, disconnect_reason
from gateway.connections import LocalConnection
from gateway.gateway import Gateway
from gateway.message_client import MessageServiceUnavailable, SendRejected
from gateway.metrics import DisconnectReason, inbound_label
from gateway.rate_limit import TokenBucket
from gateway.session import (
    RATE_LIMITED,
    fetch_backlog,
    interpret,
    relay_received,
    relay_send,
)
from shared.auth import Identity, bearer_token
from shared.connections import Connection
from shared.errors import FerryError
from shared.frames import AuthenticatedFrame, AuthFrame, ErrorFrame, PingFrame, PongFrame, SendFrame
from shared.request_limits import DEFAULT_MAX_HEADER_BYTES

log = logging.getLogger("ferry.gateway.websocket")

PATH = "/v1/ws"
GATEWAY_STATE_KEY = "gateway"


class _Quiet(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs "connection open" and "connection closed" at info for every socket;
    at thousands of connections those lines cost more than the connections: debug here."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)


_WIRE_LOG = _Quiet(logging.getLogger("ferry.gateway.wire"), {})

# Phases of a connection.
_HANDSHAKE, _OPEN, _CLOSING, _DONE = range(4)


def _error_response(status: int, code: str, message: str) -> Response:
    """An HTTP answer instead of the upgrade, with the contract's error body."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "application/json"),
        ]
    )
    return Response(status, HTTPStatus(status).phrase, headers, body)


def query_token(path: str) -> str:
    """The `?token=` of a request target ("" when absent)."""
    _, _, query = path.partition("?")
    values = parse_qs(query).get("token")
    return values[0] if values else ""


def header_bytes(request: Request) -> int:
    return sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items())


class GatewayWebSocket(asyncio.Protocol):
    """One client's WebSocket (see the module docstring). Slotted: thousands stay idle."""

    __slots__ = (
        "_bucket",
        "_busy",
        "_close_timer",
        "_connection",
        "_expires_at",
        "_expiry",
        "_fragments",
        "_gateway",
        "_loop",
        "_phase",
        "_ping_payload",
        "_ping_timer",
        "_read_paused",
        "_server_connections",
        "_stash",
        "_stopping",
        "_transport",
        "_upgraded",
        "_write_paused",
        "_ws",
    )

    def __init__(
        self,
        config: object = None,
        server_state: object = None,
        app_state: Mapping[str, Any] | None = None,
        **_: object,
    ) -> None:
        if app_state is None or GATEWAY_STATE_KEY not in app_state:
            raise RuntimeError("the gateway's lifespan did not publish the gateway")
        gateway: Gateway = app_state[GATEWAY_STATE_KEY]
        settings = gateway.settings
        self._gateway = gateway
        self._loop = asyncio.get_running_loop()
        # uvicorn's set of open connections: its graceful shutdown calls `shutdown()` on each
        # and waits until the set is empty (so every session deregisters first).
        self._server_connections: set[Any] | None = getattr(server_state, "connections", None)
        extensions: list[ServerExtensionFactory] = []
        if settings.permessage_deflate:
            extensions.append(
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12,
                    client_max_window_bits=12,
                    compress_settings={"memLevel": 5},
                )
            )
        self._ws = ServerProtocol(
            extensions=extensions or None, max_size=settings.max_frame_bytes, logger=_WIRE_LOG
        )
        self._transport: asyncio.Transport | None = None
        self._phase = _HANDSHAKE
        self._connection: LocalConnection | None = None
        self._expires_at: int | None = None
        self._bucket: TokenBucket | None = None  # made at the first send: most never send
        self._busy = 0  # tasks in flight for this connection's frames
        self._stash: list[Frame] | None = None  # frames read while every slot was busy
        self._fragments: list[Frame] | None = None
        self._read_paused = False
        self._write_paused = False
        self._stopping = False
        self._upgraded = False
        self._ping_payload: bytes | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is no subclass of asyncio.Transport, hence the cast).
        self._transport = cast(asyncio.Transport, transport)
        if self._server_connections is not None:
            self._server_connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        if self._phase == _HANDSHAKE:
            for event in self._ws.events_received():
                if isinstance(event, Request):
                    self._begin(event)
            self._flush()
            return
        self._handle_events()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        self._ws.events_received()  # nothing more matters: the client is leaving
        if self._connection is not None and self._phase == _OPEN:
            self._connection.ended(DisconnectReason.CONNECTION_LOST)
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        handshaking = self._phase == _HANDSHAKE
        self._phase = _DONE
        self._stop_timers()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._stash = None
        if handshaking:
            # The handshake task, if one runs, cleans up after its next step.
            if self._connection is None:
                self._forget_server_connection()
            return
        self._finish()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._connection is not None and self._phase == _OPEN:
            self._connection.drain()

    # --- uvicorn's graceful shutdown ---------------------------------------------------------

    def shutdown(self) -> None:
        """Close with 1001 (going away); a handshake in progress is refused with 503."""
        self._stopping = True
        if self._phase == _OPEN and self._connection is not None:
            self._connection.close(DisconnectReason.SHUTDOWN)

    # --- the Wire the LocalConnection writes to ----------------------------------------------

    def writable(self) -> bool:
        return not self._write_paused

    def write_text(self, text: str) -> bool:
        if self._phase != _OPEN or self._transport is None or self._transport.is_closing():
            return False
        try:
            self._ws.send_text(text.encode())
        except InvalidState:
            return False
        self._flush()
        return True

    def close(self, code: int | None, reason: str) -> None:
        if self._phase == _HANDSHAKE:
            return  # the handshake applies it once the connection is open
        if code is not None:
            self._start_closing(code, reason)
        elif self._phase == _OPEN:
            # The client is gone: nothing to send, nothing to wait for.
            self._phase = _CLOSING
            self._stop_timers()
            if self._transport is not None:
                self._transport.close()
                self._arm_close_timer()

    # --- the handshake -----------------------------------------------------------------------

    def _begin(self, request: Request) -> None:
        """A handshake request arrived: refuse it at once, or verify it in one short task."""
        path = request.path.partition("?")[0]
        if path != PATH:
            self._deny(404, "not_found", f"no WebSocket at {path}; connect to {PATH}")
            return
        if header_bytes(request) > DEFAULT_MAX_HEADER_BYTES:
            self._deny(
                431,
                "request_headers_too_large",
                f"request headers exceed {DEFAULT_MAX_HEADER_BYTES} bytes",
            )
            return
        response = self._ws.accept(request)
        if response.status_code != 101:  # not a valid WebSocket handshake: websockets says why
            self._ws.send_response(response)
            return
        # Browsers cannot set headers on a WebSocket, hence `?token=` as well.
        token = bearer_token(request.headers.get("Authorization")) or query_token(request.path)
        self._pause_reading()  # nothing may arrive before the upgrade
        self._gateway.start(self._handshake(token, response), "handshake")

    async def _handshake(self, token: str, response: Response) -> None:
        try:
            await self._verify_register_and_open(token, response)
        except BaseException:
            # A bug (logged by the caller) or cancellation: never leave the client hanging.
            self._deny(500, "internal_error", "the connection could not be set up")
            connection = self._connection
            if connection is not None and self._upgraded:
                connection.close(DisconnectReason.SERVER_ERROR)
            elif connection is not None:
                self._finish()
            raise

    async def _verify_register_and_open(self, token: str, response: Response) -> None:
        gateway = self._gateway
        try:
            identity = await gateway.verifier.verify(token)
        except FerryError as error:
            # A rejected token never becomes a connection.
            self._deny(error.status, error.error_code, error.message)
            return
        if self._phase != _HANDSHAKE:
            return
        if self._stopping or not gateway.connections.accepting:
            self._deny(503, "unavailable", "this gateway is shutting down; connect again")
            return
        connection = self._connection = self._hold(identity)
        await self._register_and_open(identity, connection, response)

    def _hold(self, identity: Identity) -> LocalConnection:
        gateway, settings = self._gateway, self._gateway.settings
        self._expires_at = identity.expires_at
        connection = LocalConnection(
            Connection(
                user_id=identity.user_id,
                device_id=identity.device_id,
                gateway_url=settings.public_url,
                connection_id=uuid.uuid4().hex,
                expires_at=int(time.time()) + settings.registry_ttl_seconds,
            ),
            queue_frames=settings.outbound_queue_frames,
            metrics=gateway.metrics,
            wire=self,
        )
        # Held locally first, so a push that follows the registration always finds it.
        gateway.connections.add(connection)
        return connection

    async def _register_and_open(
        self, identity: Identity, connection: LocalConnection, response: Response
    ) -> None:
        gateway = self._gateway
        try:
            await gateway.registrations.submit(connection.row)
        except Exception as error:
            gateway.metrics.registry_errors.labels("register").inc()
            log.warning("could not register a connection: %s", error, extra=_extra(connection))
            registered = False
        else:
            connection.registered = registered = True
        backlog: list[dict[str, Any]] | None = None
        if registered and self._phase == _HANDSHAKE:
            try:
                # One call: admits the device (403 beyond the account's limit) and reads what
                # is pending for it.
                backlog = await gateway.backlogs.submit((identity.user_id, identity.device_id))
            except SendRejected as refusal:
                self._deny(refusal.status, refusal.code, refusal.message)
                self._finish()
                return
            except MessageServiceUnavailable as error:
                # Nobody can say now: the backlog is asked for again after the upgrade.
                log.warning("pending messages not fetched yet: %s", error, extra=_extra(connection))
        if self._phase != _HANDSHAKE:  # the client left meanwhile
            self._finish()
            return
        if self._stopping:
            self._deny(503, "unavailable", "this gateway is shutting down; connect again")
            self._finish()
            return
        self._open(response)
        log.debug("connected", extra=_extra(connection))
        if not registered:
            connection.close(DisconnectReason.REGISTRY_UNAVAILABLE)
        request = connection.close_request
        if request is not None:  # not registered, or replaced or stopped meanwhile
            self.close(request.code, request.reason)
        elif backlog is not None:
            connection.deliver_pending(backlog)
        else:
            attempts = gateway.settings.pending_fetch_attempts - 1
            if attempts > 0:
                gateway.start(fetch_backlog(gateway, connection, attempts), "backlog fetch")
            else:
                gateway.metrics.pending_fetch_failures.inc()
                connection.deliver_pending([])

    def _open(self, response: Response) -> None:
        self._ws.send_response(response)
        self._flush()
        self._phase = _OPEN
        self._upgraded = True
        self._resume_reading()
        self._schedule_ping()
        self._schedule_expiry()

    def _deny(self, status: int, code: str, message: str) -> None:
        """Answer the handshake with an HTTP error instead of the upgrade."""
        if self._phase != _HANDSHAKE or self._transport is None:
            return
        self._ws.send_response(_error_response(status, code, message))
        self._flush()
        self._phase = _CLOSING

    # --- frames from the client --------------------------------------------------------------

    def _handle_events(self) -> None:
        for event in self._ws.events_received():
            if not isinstance(event, Frame):
                continue
            if self._stash is not None:
                self._stash.append(event)
            else:
                self._on_frame(event)
        if self._ws.parser_exc is not None:
            self._on_protocol_error()
        self._flush()

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._on_message(frame.opcode, frame.data)
            else:
                self._fragments = [frame]
        elif opcode is Opcode.CONT:
            if self._fragments is None:
                return  # websockets refuses a stray continuation itself
            self._fragments.append(frame)
            if frame.fin:
                parts, self._fragments = self._fragments, None
                self._on_message(parts[0].opcode, b"".join(bytes(part.data) for part in parts))
        elif opcode is Opcode.PONG:
            if self._ping_payload is not None and bytes(frame.data) == self._ping_payload:
                self._ping_payload = None
                self._schedule_ping()
        elif opcode is Opcode.CLOSE:
            self._on_close_frame()
        # PING: websockets queued the pong; `_flush` writes it.

    def _on_message(self, opcode: Opcode, data: bytes | bytearray | memoryview) -> None:
        connection = self._connection
        if self._phase != _OPEN or connection is None or connection.closing:
            return  # past our close frame: discard until the client's
        text: str | None = None
        if opcode is Opcode.TEXT:
            try:
                text = bytes(data).decode()
            except UnicodeDecodeError:
                self._ws.fail(1007, "invalid UTF-8")  # RFC 6455: invalid frame payload data
                self._on_protocol_error()
                return
        metrics = self._gateway.metrics
        frame = interpret(text)
        if isinstance(frame, ErrorFrame):
            metrics.frames.labels("in", "invalid").inc()
            connection.reply(frame)
            return
        metrics.frames.labels("in", inbound_label(frame.type)).inc()
        if isinstance(frame, PingFrame):
            connection.reply(PongFrame())
        elif isinstance(frame, AuthFrame):
            self._start(self._authenticate(connection, frame), "auth")
        elif isinstance(frame, SendFrame):
            now = time.monotonic()
            settings = self._gateway.settings
            if self._bucket is None:
                self._bucket = TokenBucket(
                    rate_per_second=settings.send_rate_per_second,
                    burst=settings.send_burst,
                    now=now,
                )
            if not self._bucket.try_take(now):
                metrics.send_errors.labels(RATE_LIMITED).inc()
                connection.reply(
                    ErrorFrame(
                        code=RATE_LIMITED,
                        message="too many sends; slow down",
                        client_msg_id=frame.client_msg_id,
                    )
                )
                return
            work = relay_send(self._gateway, connection, frame, time.perf_counter())
            self._start(work, "send")
        elif frame.message_ids:
            self._start(relay_received(self._gateway, connection, frame.message_ids), "received")

    def _start(self, work: Any, name: str) -> None:
        """One task for a frame's work; at the limit, reading stops until one finishes."""
        self._busy += 1
        task = self._gateway.start(work, name)
        task.add_done_callback(self._released)
        if self._busy >= self._gateway.settings.sends_in_flight_per_connection:
            self._stash = []
            self._pause_reading()

    def _released(self, _: asyncio.Task[None]) -> None:
        self._busy -= 1
        stash = self._stash
        if stash is None or self._phase != _OPEN:
            return
        self._stash = None
        for index, event in enumerate(stash):
            if self._stash is not None:  # the limit was reached again
                self._stash.extend(stash[index:])
                break
            self._on_frame(event)
        if self._stash is None:
            self._resume_reading()
        self._flush()

    async def _authenticate(self, connection: LocalConnection, frame: AuthFrame) -> None:
        """Take a fresh token of the same user and device, or say why not (the old one holds)."""
        try:
            identity = await self._gateway.verifier.verify(frame.token)
        except FerryError as error:
            connection.reply(ErrorFrame(code=error.error_code, message=error.message))
            return
        if (identity.user_id, identity.device_id) != connection.key:
            connection.reply(
                ErrorFrame(
                    code="forbidden",
                    message="the new token must name the same user and device as the session",
                )
            )
            return
        self._expires_at = identity.expires_at
        self._schedule_expiry()
        connection.reply(AuthenticatedFrame(expires_at=identity.expires_at))

    def _on_close_frame(self) -> None:
        if self._phase == _OPEN:
            # The client closes: websockets queued the echo and the end of the stream.
            received = self._ws.close_rcvd
            code = received.code if received is not None else CloseCode.NO_STATUS
            self._phase = _CLOSING
            self._stop_timers()
            if self._connection is not None:
                self._connection.ended(disconnect_reason(code))
        # Either way the closing handshake is complete once `_flush` writes what is queued.
        self._arm_close_timer()

    def _on_protocol_error(self) -> None:
        """An oversized frame (1009), invalid UTF-8 (1007)...: close, keep reading until EOF."""
        if self._phase != _OPEN:
            return  # every later read reports the same error; it is handled once
        sent = self._ws.close_sent
        code = sent.code if sent is not None else CloseCode.INTERNAL_ERROR
        self._phase = _CLOSING
        self._stop_timers()
        if self._connection is not None:
            self._connection.ended(disconnect_reason(code))
        self._flush()  # the close frame, then EOF: the client reads the code and closes
        self._stash = None
        self._resume_reading()  # discard what still arrives, so no reset overtakes the close
        self._arm_close_timer()

    # --- closing -----------------------------------------------------------------------------

    def _start_closing(self, code: int, reason: str) -> None:
        """Write a close frame now (even past a full buffer) and reset if no answer comes."""
        transport = self._transport
        if self._phase != _OPEN or transport is None or transport.is_closing():
            return
        self._phase = _CLOSING
        self._stop_timers()
        self._stash = None
        with suppress(InvalidState):  # the client's close arrived first
            self._ws.send_close(code, reason)
        self._flush()
        self._resume_reading()  # so the client's closing frame (and nothing else) is seen
        self._arm_close_timer()

    def _arm_close_timer(self) -> None:
        if self._close_timer is None and self._phase != _DONE:
            timeout = self._gateway.settings.close_timeout_seconds
            self._close_timer = self._loop.call_later(timeout, self._reset)

    def _reset(self) -> None:
        """Drop the connection and everything buffered for it, here and in the kernel.

        `transport.abort()` frees only asyncio's buffer: closing the socket would still leave
        the kernel sending its own (megabytes, on a fast link) to a peer that does not read.
        SO_LINGER 0 makes the close a reset that discards that too.
        """
        self._close_timer = None
        transport = self._transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def _finish(self) -> None:
        """The connection is over: forget it here and in the registry (once)."""
        connection, self._connection = self._connection, None
        if connection is None:
            self._forget_server_connection()
            return
        gateway = self._gateway
        gateway.connections.remove(connection)
        if connection.close_request is None:
            connection.ended(DisconnectReason.CONNECTION_LOST)
        request = connection.close_request
        why = request.why if request is not None else DisconnectReason.SERVER_ERROR
        if self._upgraded:  # a refusal before the upgrade (403) is no disconnect
            gateway.metrics.disconnects.labels(why.value).inc()
            log.debug("disconnected", extra={**_extra(connection), "reason": why.value})
        if connection.registered:
            gateway.start(self._deregister(connection), "deregistration")
        else:
            self._forget_server_connection()

    async def _deregister(self, connection: LocalConnection) -> None:
        try:
            # Bounded: a slow registry must not hold a finished session (and shutdown) long.
            async with asyncio.timeout(self._gateway.settings.internal_call_timeout_seconds):
                await self._gateway.registry.deregister(connection.row)
        except Exception as error:  # the row's TTL removes it later
            self._gateway.metrics.registry_errors.labels("deregister").inc()
            log.warning("could not deregister a connection: %s", error, extra=_extra(connection))
        finally:
            self._forget_server_connection()

    def _forget_server_connection(self) -> None:
        if self._server_connections is not None:
            self._server_connections.discard(self)

    # --- timers ------------------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        interval = self._gateway.settings.ping_interval_seconds
        self._ping_timer = self._loop.call_later(interval, self._send_ping)

    def _send_ping(self) -> None:
        if self._phase != _OPEN:
            return
        self._ping_payload = os.urandom(4)
        self._ws.send_ping(self._ping_payload)
        self._flush()
        timeout = self._gateway.settings.ping_timeout_seconds
        self._ping_timer = self._loop.call_later(timeout, self._ping_timed_out)

    def _ping_timed_out(self) -> None:
        """No pong in time: the peer is gone or not reading; its unsent buffer goes now."""
        self._ping_timer = None
        if self._phase != _OPEN:
            return
        self._phase = _CLOSING
        if self._connection is not None:
            self._connection.ended(DisconnectReason.CONNECTION_LOST)
        self._reset()

    def _schedule_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._expires_at is not None:
            left = max(0.0, self._expires_at - time.time())
            self._expiry = self._loop.call_later(left, self._expire)

    def _expire(self) -> None:
        """Close with 4001 once the token has expired (an `auth` frame moved it later)."""
        self._expiry = None
        if self._expires_at is None or self._connection is None:
            return
        if time.time() < self._expires_at:
            self._schedule_expiry()
            return
        self._connection.close(DisconnectReason.TOKEN_EXPIRED)

    def _stop_timers(self) -> None:
        for timer in (self._ping_timer, self._expiry):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._expiry = None
        self._ping_payload = None

    # --- I/O ---------------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write what websockets queued; its end-of-stream marker half-closes the socket."""
        transport = self._transport
        if transport is None:
            return
        for chunk in self._ws.data_to_send():
            if transport.is_closing():
                return
            if chunk:
                transport.write(chunk)
            else:
                # Half-close: the client reads everything sent, then closes its side (a
                # close timer resets the connection if it never does).
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()
                self._arm_close_timer()

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self._transport is not None and not self._transport.is_closing():
            self._read_paused = False
            self._transport.resume_reading()


def _extra(connection: LocalConnection) -> dict[str, str]:
    return {"user_id": connection.row.user_id, "device_id": connection.row.device_id}
