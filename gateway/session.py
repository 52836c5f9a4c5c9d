"""What a WebSocket session does with its frames, apart from the wire (gateway.websocket).

The pure decisions (what a client frame is, how a refused send is answered) and the short
pieces of work a frame starts: relaying a send or an acknowledgement to the Message Service,
and fetching a backlog the handshake could not. Each runs as its own short task; an idle
connection runs none.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from pydantic import ValidationError

from gateway.connections import LocalConnection
from gateway.gateway import Gateway
from gateway.message_client import UNAVAILABLE, MessageServiceUnavailable, SendRejected
from shared.frames import (
    AuthFrame,
    ErrorFrame,
    PingFrame,
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


# --- work a frame starts ------------------------------------------------------------------------


def _log_extra(connection: LocalConnection) -> dict[str, str]:
    return {"user_id": connection.row.user_id, "device_id": connection.row.device_id}


async def relay_send(
    gateway: Gateway, connection: LocalConnection, frame: SendFrame, received_at: float
) -> None:
    """Store one `send` through the Message Service; answer `sent` or an error frame."""
    request_id_var.set(new_request_id())  # this task's own context: one id per send
    metrics = gateway.metrics
    try:
        send = InternalSend(
            sender=connection.row.user_id,
            sender_device=connection.row.device_id,
            conversation_id=frame.conversation_id,
            message=SendMessage(
                client_msg_id=frame.client_msg_id, text=frame.text, media=list(frame.media)
            ),
        )
        stored = await gateway.messages.send(send)
    except ValidationError as error:
        metrics.send_errors.labels("rejected").inc()
        connection.reply(
            ErrorFrame(code=BAD_FRAME, message=_describe(error), client_msg_id=frame.client_msg_id)
        )
    except SendRejected as error:
        metrics.send_errors.labels("rejected").inc()
        connection.reply(rejection_frame(frame.client_msg_id, error))
    except MessageServiceUnavailable as error:
        metrics.send_errors.labels(UNAVAILABLE).inc()
        log.warning("a send could not be relayed: %s", error, extra=_log_extra(connection))
        connection.reply(rejection_frame(frame.client_msg_id, error))
    else:
        connection.reply(
            SentFrame(
                client_msg_id=frame.client_msg_id, message_id=stored.message_id, seq=stored.seq
            )
        )
        metrics.send_latency.observe(time.perf_counter() - received_at)


async def relay_received(
    gateway: Gateway, connection: LocalConnection, message_ids: list[str]
) -> None:
    """The client has these messages: they stop being pending for its device."""
    request_id_var.set(new_request_id())
    try:
        await gateway.messages.received(
            connection.row.user_id, connection.row.device_id, message_ids
        )
    except MessageServiceUnavailable as error:
        # Still pending, so they are delivered again on reconnect (at least once).
        log.warning("an acknowledgement was lost: %s", error, extra=_log_extra(connection))


async def fetch_backlog(gateway: Gateway, connection: LocalConnection, attempts: int) -> None:
    """Fetch and write the backlog the handshake could not (then it waits for a reconnect)."""
    messages: list[dict[str, Any]] = []
    for attempt in range(attempts):
        await asyncio.sleep(PENDING_RETRY_BASE_SECONDS * 2**attempt)
        if connection.closing:
            return
        try:
            # Batched like the handshakes' fetches: after an outage, many connections retry at
            # once, and one call each would add to the load that made them fail.
            messages = await gateway.backlogs.submit(
                (connection.row.user_id, connection.row.device_id)
            )
            break
        except (MessageServiceUnavailable, SendRejected) as error:
            if attempt + 1 == attempts:
                gateway.metrics.pending_fetch_failures.inc()
                log.warning(
                    "pending messages not fetched; they come on reconnect: %s",
                    error,
                    extra=_log_extra(connection),
                )
    connection.deliver_pending(messages)
