"""One WebSocket session: register, deliver the backlog, then relay frames both ways until closed.

Three tasks per connection, all in one `TaskGroup`: the reader (client frames), the writer
(drains the outbound queue) and, briefly, the backlog fetch; plus one task per send in flight,
at most `sends_in_flight_per_connection`, so a slow Message Service never stops the reading of
pings. Every way a connection ends (client close, replaced, slow reader, shutdown, a bug) goes
through `LocalConnection.close`, and this session is the one place that acts on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.close_codes import CLOSINGS, CloseCode, disconnect_reason
from gateway.connections import ClientGone, LocalConnection
from gateway.gateway import Gateway
from gateway.message_client import UNAVAILABLE, MessageServiceUnavailable, SendRejected
from gateway.metrics import DisconnectReason, inbound_label
from gateway.rate_limit import TokenBucket
from shared.auth import Identity, TokenVerifier
from shared.connections import Connection
from shared.errors import FerryError
from shared.frames import (
    AuthenticatedFrame,
    AuthFrame,
    ErrorFrame,
    PingFrame,
    PongFrame,
    ReceivedFrame,
    SendFrame,
    SentFrame,
    parse_client_frame,
)
from shared.logging import new_request_id, request_id_var
from shared.models import InternalSend, SendMessage

log = logging.getLogger("ferry.gateway.session")

BAD_FRAME = "bad_frame"
RATE_LIMITED = "rate_limited"
# Waits between attempts to fetch the backlog (then it is left for the next reconnect).
PENDING_RETRY_BASE_SECONDS = 0.25

ClientFrame = SendFrame | ReceivedFrame | PingFrame | AuthFrame


# --- pure decisions (unit-tested) ------------------------------------------------------------


def _describe(error: ValidationError) -> str:
    problem = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in problem.get("loc", ()))
    message = str(problem.get("msg", "invalid"))
    return f"{where}: {message}" if where else message


def _client_msg_id_of(text: str) -> str | None:
    """The `client_msg_id` of a malformed frame, when there is a usable one to answer with."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: deeply nested brackets (a 60 KB frame of them fits the size limit);
        # the frame is answered with an error like any other malformed one.
        return None
    if isinstance(value, dict):
        client_msg_id = value.get("client_msg_id")
        if isinstance(client_msg_id, str) and 0 < len(client_msg_id) <= 128:
            return client_msg_id
    return None


def interpret(text: str | None) -> ClientFrame | ErrorFrame:
    """A client's frame, or the error frame that answers it (None: a binary frame)."""
    if text is None:
        return ErrorFrame(code=BAD_FRAME, message="frames are JSON text, not binary")
    try:
        return parse_client_frame(text)
    except RecursionError:  # pydantic bounds its own depth; this is the belt to those braces
        return ErrorFrame(code=BAD_FRAME, message="not a valid client frame (nested too deeply)")
    except ValidationError as error:
        return ErrorFrame(
            code=BAD_FRAME,
            message=f"not a valid client frame ({_describe(error)})",
            client_msg_id=_client_msg_id_of(text),
        )


def rejection_frame(
    client_msg_id: str, error: SendRejected | MessageServiceUnavailable
) -> ErrorFrame:
    if isinstance(error, SendRejected):
        return ErrorFrame(code=error.code, message=error.message, client_msg_id=client_msg_id)
    return ErrorFrame(
        code=UNAVAILABLE,
        message="messages cannot be stored right now; send again shortly",
        client_msg_id=client_msg_id,
    )


# --- the session -------------------------------------------------------------------------------


class Session:
    def __init__(self, gateway: Gateway, websocket: WebSocket, identity: Identity) -> None:
        self._gateway = gateway
        self._websocket = websocket
        self._identity = identity
        # When the session ends unless an `auth` frame brings a later token (None: never).
        self._expires_at = identity.expires_at
        settings = gateway.settings
        self._bucket = TokenBucket(
            rate_per_second=settings.send_rate_per_second,
            burst=settings.send_burst,
            now=time.monotonic(),
        )
        self._slots = asyncio.Semaphore(settings.sends_in_flight_per_connection)
        self._log_extra = {"user_id": identity.user_id, "device_id": identity.device_id}

    async def run(self) -> None:
        gateway, settings = self._gateway, self._gateway.settings
        await self._websocket.accept()
        if not gateway.connections.accepting:
            shutdown = CLOSINGS[DisconnectReason.SHUTDOWN]
            await self._close_socket(shutdown.code, shutdown.text)
            return
        connection = LocalConnection(
            Connection(
                user_id=self._identity.user_id,
                device_id=self._identity.device_id,
                gateway_url=settings.public_url,
                connection_id=uuid.uuid4().hex,
                expires_at=int(time.time()) + settings.registry_ttl_seconds,
            ),
            queue_frames=settings.outbound_queue_frames,
            metrics=gateway.metrics,
        )
        # Held locally first, so a push that follows the registration always finds it.
        gateway.connections.add(connection)
        log.info(
            "connected", extra={**self._log_extra, "connection_id": connection.row.connection_id}
        )
        try:
            try:
                await gateway.registry.register(connection.row)
            except Exception as error:
                gateway.metrics.registry_errors.labels("register").inc()
                log.warning("could not register a connection: %s", error, extra=self._log_extra)
                connection.close(DisconnectReason.REGISTRY_UNAVAILABLE)
            else:
                connection.registered = True
            await self._serve(connection)
        finally:
            gateway.connections.remove(connection)
            if connection.registered:
                await self._deregister(connection)
            request = connection.close_request
            why = request.why if request else DisconnectReason.SERVER_ERROR
            gateway.metrics.disconnects.labels(why.value).inc()
            log.info("disconnected", extra={**self._log_extra, "reason": why.value})

    async def _serve(self, connection: LocalConnection) -> None:
        async with asyncio.TaskGroup() as tasks:
            children: list[asyncio.Task[None]] = []
            if not connection.closing:
                children = [
                    tasks.create_task(self._guard(connection, connection.write_loop(self._send))),
                    tasks.create_task(self._guard(connection, self._read_loop(connection, tasks))),
                    tasks.create_task(self._guard(connection, self._deliver_pending(connection))),
                    tasks.create_task(self._guard(connection, self._expire(connection))),
                ]
            request = await connection.wait_closing()
            for child in children:
                child.cancel()
            if request.code is not None:
                await self._close_socket(request.code, request.reason)
            # Leaving the group waits for sends in flight (bounded by the call timeout): their
            # messages are stored even though the answer can no longer reach this client.

    async def _guard(self, connection: LocalConnection, work: Coroutine[Any, Any, None]) -> None:
        """A bug in one part ends this connection (logged), never the gateway's other ones."""
        try:
            await work
        except Exception:
            log.exception("a WebSocket session failed", extra=self._log_extra)
            connection.close(DisconnectReason.SERVER_ERROR)

    async def _expire(self, connection: LocalConnection) -> None:
        """Close with 4001 once the token has expired; an `auth` frame moves the moment later."""
        while self._expires_at is not None:
            left = self._expires_at - time.time()
            if left <= 0:
                connection.close(DisconnectReason.TOKEN_EXPIRED)
                return
            await asyncio.sleep(left)  # then look again: the session may have been extended

    async def _authenticate(self, connection: LocalConnection, frame: AuthFrame) -> None:
        """Take a fresh token of the same user and device, or say why not (the old one holds)."""
        verifier: TokenVerifier = self._websocket.app.state.token_verifier
        try:
            identity = await verifier.verify(frame.token)
        except FerryError as error:
            connection.reply(ErrorFrame(code=error.error_code, message=error.message))
            return
        if (identity.user_id, identity.device_id) != (
            self._identity.user_id,
            self._identity.device_id,
        ):
            connection.reply(
                ErrorFrame(
                    code="forbidden",
                    message="the new token must name the same user and device as the session",
                )
            )
            return
        self._expires_at = identity.expires_at
        connection.reply(AuthenticatedFrame(expires_at=identity.expires_at))

    async def _send(self, text: str) -> None:
        try:
            await self._websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError) as error:
            raise ClientGone() from error

    async def _close_socket(self, code: int, reason: str) -> None:
        # The client may be gone already: there is nobody left to tell.
        with suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._websocket.close(code, reason)

    async def _deregister(self, connection: LocalConnection) -> None:
        try:
            # Bounded: a slow registry must not hold a finished session (and shutdown) long.
            async with asyncio.timeout(self._gateway.settings.internal_call_timeout_seconds):
                await self._gateway.registry.deregister(connection.row)
        except Exception as error:  # the row's TTL removes it later
            self._gateway.metrics.registry_errors.labels("deregister").inc()
            log.warning("could not deregister a connection: %s", error, extra=self._log_extra)

    # --- client to server ------------------------------------------------------------------

    async def _read_loop(self, connection: LocalConnection, tasks: asyncio.TaskGroup) -> None:
        frames = self._gateway.metrics.frames
        while True:
            message = await self._websocket.receive()
            if message["type"] == "websocket.disconnect":
                code = int(message.get("code", CloseCode.NO_STATUS))
                connection.ended(disconnect_reason(code))
                return
            received_at = time.perf_counter()
            frame = interpret(message.get("text"))
            if isinstance(frame, ErrorFrame):
                frames.labels("in", "invalid").inc()
                connection.reply(frame)
                continue
            frames.labels("in", inbound_label(frame.type)).inc()
            if isinstance(frame, PingFrame):
                connection.reply(PongFrame())
            elif isinstance(frame, AuthFrame):
                await self._authenticate(connection, frame)
            elif isinstance(frame, SendFrame):
                if not self._bucket.try_take(time.monotonic()):
                    self._gateway.metrics.send_errors.labels(RATE_LIMITED).inc()
                    connection.reply(
                        ErrorFrame(
                            code=RATE_LIMITED,
                            message="too many sends; slow down",
                            client_msg_id=frame.client_msg_id,
                        )
                    )
                    continue
                # Waiting for a slot stops reading: TCP pushes back on a client that floods.
                await self._slots.acquire()
                tasks.create_task(
                    self._guard(connection, self._relay_send(connection, frame, received_at))
                )
            elif frame.message_ids:
                await self._slots.acquire()
                tasks.create_task(
                    self._guard(connection, self._relay_received(connection, frame.message_ids))
                )

    async def _relay_send(
        self, connection: LocalConnection, frame: SendFrame, received_at: float
    ) -> None:
        request_id_var.set(new_request_id())  # this task's own context: one id per send
        metrics = self._gateway.metrics
        try:
            send = InternalSend(
                sender=self._identity.user_id,
                sender_device=self._identity.device_id,
                conversation_id=frame.conversation_id,
                message=SendMessage(
                    client_msg_id=frame.client_msg_id, text=frame.text, media=list(frame.media)
                ),
            )
            stored = await self._gateway.messages.send(send)
        except ValidationError as error:
            metrics.send_errors.labels("rejected").inc()
            connection.reply(
                ErrorFrame(
                    code=BAD_FRAME, message=_describe(error), client_msg_id=frame.client_msg_id
                )
            )
        except SendRejected as error:
            metrics.send_errors.labels("rejected").inc()
            connection.reply(rejection_frame(frame.client_msg_id, error))
        except MessageServiceUnavailable as error:
            metrics.send_errors.labels(UNAVAILABLE).inc()
            log.warning("a send could not be relayed: %s", error, extra=self._log_extra)
            connection.reply(rejection_frame(frame.client_msg_id, error))
        else:
            connection.reply(
                SentFrame(
                    client_msg_id=frame.client_msg_id, message_id=stored.message_id, seq=stored.seq
                )
            )
            metrics.send_latency.observe(time.perf_counter() - received_at)
        finally:
            self._slots.release()

    async def _relay_received(self, connection: LocalConnection, message_ids: list[str]) -> None:
        request_id_var.set(new_request_id())
        try:
            await self._gateway.messages.received(
                self._identity.user_id, self._identity.device_id, message_ids
            )
        except MessageServiceUnavailable as error:
            # Still pending, so they are delivered again on reconnect (at least once).
            log.warning("an acknowledgement was lost: %s", error, extra=self._log_extra)
        finally:
            self._slots.release()

    # --- server to client --------------------------------------------------------------------

    async def _deliver_pending(self, connection: LocalConnection) -> None:
        gateway = self._gateway
        attempts = gateway.settings.pending_fetch_attempts
        messages: list[dict[str, Any]] = []
        for attempt in range(attempts):
            try:
                messages = await gateway.messages.pending(
                    self._identity.user_id, self._identity.device_id
                )
                break
            except MessageServiceUnavailable as error:
                if attempt + 1 == attempts:
                    gateway.metrics.pending_fetch_failures.inc()
                    log.warning(
                        "pending messages not fetched; they come on reconnect: %s",
                        error,
                        extra=self._log_extra,
                    )
                else:
                    await asyncio.sleep(PENDING_RETRY_BASE_SECONDS * 2**attempt)
        connection.deliver_pending(messages)
