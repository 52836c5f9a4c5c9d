"""The connections this gateway holds: one `LocalConnection` per (user, device).

Every frame for a client is written to its socket at once, or waits in a bounded queue while
the socket's send buffer is full. Nothing waits for a slow client: a frame that finds the queue
full disconnects the client instead (close code 1013), so a client that stops reading costs at
most `outbound_queue_frames` frames (plus the socket buffers) of memory. No task per connection:
an idle connection is a few objects. The frames are serialized once, when offered.

Until a new connection's pending messages are written, live frames are held back (and
deduplicated by `message_id` against the pending ones), so the client sees its backlog first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gateway.close_codes import CLOSINGS
from gateway.metrics import DisconnectReason, GatewayMetrics, outbound_label
from shared.connections import Connection
from shared.frames import Frame

log = logging.getLogger("ferry.gateway.connections")


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def message_id_of(frame: dict[str, Any]) -> str | None:
    """The `message_id` of a `message` frame (None for every other frame)."""
    if frame.get("type") != "message":
        return None
    message = frame.get("message")
    if isinstance(message, dict):
        message_id = message.get("message_id")
        if isinstance(message_id, str):
            return message_id
    return None


def backlog_frame(message: dict[str, Any]) -> dict[str, Any]:
    """The frame of a pending message: relayed as stored, or `message_deleted` for the
    tombstone of a message deleted before this device acknowledged it."""
    if message.get("deleted") is True:
        return {
            "type": "message_deleted",
            "conversation_id": message.get("conversation_id"),
            "message_id": message.get("message_id"),
            "seq": message.get("seq"),
        }
    return {"type": "message", "message": message}


class PendingWindow:
    """Live frames held while a connection's pending messages are fetched and queued (pure).

    Dedupes by `message_id`: a message stored after the device registered is both pending and
    pushed live, and the client should see it once (clients dedupe too: this only saves work).
    """

    __slots__ = ("_held", "_limit", "_seen")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held: list[dict[str, Any]] = []
        self._seen: set[str] = set()

    def hold(self, frame: dict[str, Any]) -> bool:
        """Keep a live frame for later; False when the window is full (the caller disconnects)."""
        if len(self._held) >= self._limit:
            return False
        self._held.append(frame)
        return True

    def first_sight(self, frame: dict[str, Any]) -> bool:
        """Whether this frame is new (every non-message frame is); remembers message ids."""
        message_id = message_id_of(frame)
        if message_id is None:
            return True
        if message_id in self._seen:
            return False
        self._seen.add(message_id)
        return True

    def take_held(self) -> list[dict[str, Any]]:
        """The held frames not seen before, in arrival order; the window is empty afterwards."""
        held, self._held = self._held, []
        return [frame for frame in held if self.first_sight(frame)]


@dataclass(frozen=True, slots=True)
class CloseRequest:
    why: DisconnectReason
    code: int | None  # None: the client is already gone, there is no close frame to send
    reason: str = ""


class Wire(Protocol):
    """Where a connection's frames go: the WebSocket (gateway.websocket), a list in unit tests."""

    def writable(self) -> bool:
        """False while the socket's send buffer is full (the client is not reading)."""

    def write_text(self, text: str) -> bool:
        """Write one text frame now; False when the client is gone (nothing was written)."""

    def close(self, code: int | None, reason: str) -> None:
        """Close with this code (None: the client is gone already, there is nothing to send)."""


class LocalConnection:
    """One client connection on this gateway: its registry row, outbound queue and close state.

    Synchronous: a frame is written to the socket at once while the socket takes it, and waits
    in a deque (at most `queue_frames`) only while the socket's buffer is full; the wire calls
    `drain` when it empties. A frame that finds the deque full closes the connection (1013).
    """

    __slots__ = (
        "_limit",
        "_metrics",
        "_queue",
        "_window",
        "_wire",
        "close_request",
        "registered",
        "row",
    )

    def __init__(
        self,
        row: Connection,
        *,
        queue_frames: int,
        metrics: GatewayMetrics,
        wire: Wire,
    ) -> None:
        self.row = row
        self._metrics = metrics
        self._wire = wire
        self._limit = queue_frames
        # Created when the socket first pushes back, dropped when it drains: an idle
        # connection holds no queue at all.
        self._queue: deque[tuple[str, str]] | None = None
        # Open until the pending messages are written (see `deliver_pending`).
        self._window: PendingWindow | None = PendingWindow(queue_frames)
        self.close_request: CloseRequest | None = None
        # Set once the registry holds `row`: only then may the heartbeat renew it (a renewal
        # racing the registration would find no row of ours and call it replaced).
        self.registered = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.row.user_id, self.row.device_id)

    @property
    def closing(self) -> bool:
        return self.close_request is not None

    @property
    def queued(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def renewed(self, expires_at: int) -> Connection:
        """The registry row with a later expiry (kept here once the registry accepts it)."""
        return replace(self.row, expires_at=expires_at)

    # --- closing ------------------------------------------------------------------------------

    def close(self, why: DisconnectReason) -> None:
        """End this connection with the close frame `CLOSINGS` gives `why`; the first request
        wins, later ones are no-ops. Safe from anywhere (a push, the heartbeat, shutdown)."""
        closing = CLOSINGS.get(why)
        if closing is None:
            self._request(CloseRequest(why, None))
        else:
            self._request(CloseRequest(why, closing.code, closing.text))

    def ended(self, why: DisconnectReason) -> None:
        """The connection is already over (the client closed it, TCP went away): nothing to send."""
        self._request(CloseRequest(why, None))

    def _request(self, request: CloseRequest) -> None:
        if self.close_request is not None:
            return
        self.close_request = request
        self._queue = None
        self._wire.close(request.code, request.reason)

    # --- frames to the client -----------------------------------------------------------------

    def push(self, frame: dict[str, Any]) -> bool:
        """Send a live frame from the Message Service; False if it will not reach the client."""
        if self.closing:
            return False
        if self._window is not None:
            if self._window.hold(frame):
                return True
            self._overflow("too many live frames while the backlog was fetched")
            return False
        return self._offer(outbound_label(frame.get("type")), encode(frame))

    def reply(self, frame: Frame) -> bool:
        """Send one of the gateway's own frames (`sent`, `error`, `pong`)."""
        if self.closing:
            return False
        frame_type = getattr(frame, "type", None)
        return self._offer(outbound_label(frame_type), frame.model_dump_json(exclude_none=True))

    def _offer(self, label: str, text: str) -> bool:
        queue = self._queue
        if queue is None and self._wire.writable():
            self._write(label, text)
            return True
        if queue is None:
            queue = self._queue = deque()
        if len(queue) >= self._limit:
            self._overflow("the client does not read its frames")
            return False
        queue.append((label, text))
        return True

    def drain(self) -> None:
        """Write queued frames while the socket takes them (the wire calls this as it empties)."""
        queue = self._queue
        while queue and self._wire.writable() and not self.closing:
            self._write(*queue.popleft())
        if not queue:
            self._queue = None

    def _write(self, label: str, text: str) -> None:
        if self._wire.write_text(text):
            self._metrics.frames.labels("out", label).inc()
        else:
            self.ended(DisconnectReason.CONNECTION_LOST)

    def _overflow(self, why: str) -> None:
        log.warning(
            "closing a connection: %s",
            why,
            extra={"user_id": self.row.user_id, "device_id": self.row.device_id},
        )
        self.close(DisconnectReason.SLOW_READER)

    def deliver_pending(self, messages: list[dict[str, Any]]) -> None:
        """Write the backlog, then the live frames held meanwhile; live frames flow after.

        Called with no messages when the backlog could not be fetched (it comes on reconnect);
        only the first call counts. The backlog goes straight to the socket, past the queue's
        bound: a long backlog is no sign of a slow reader (it is in memory already), and
        replies (`pong`, `sent`) must still find room in the queue meanwhile.
        """
        window = self._window
        if window is None:
            return
        self._window = None
        for message in messages:
            frame = backlog_frame(message)
            if window.first_sight(frame) and not self.closing:
                self._write(outbound_label(frame["type"]), encode(frame))
        for frame in window.take_held():
            if not self.closing:
                self._write(outbound_label(frame.get("type")), encode(frame))


class LocalConnections:
    """The connections this gateway holds, by (user, device): a device has at most one."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._by_device: dict[tuple[str, str], LocalConnection] = {}
        self._empty = asyncio.Event()
        self._empty.set()
        self.accepting = True

    def __len__(self) -> int:
        return len(self._by_device)

    def __iter__(self) -> Iterator[LocalConnection]:
        # A snapshot: callers may close (and so remove) connections while iterating.
        return iter(list(self._by_device.values()))

    def get(self, user_id: str, device_id: str) -> LocalConnection | None:
        return self._by_device.get((user_id, device_id))

    def add(self, connection: LocalConnection) -> None:
        """Hold a new connection; an older one of the same device here is closed as replaced."""
        older = self._by_device.get(connection.key)
        if older is not None:
            older.close(DisconnectReason.REPLACED)
        self._by_device[connection.key] = connection
        self._empty.clear()
        self._metrics.connections.set(len(self._by_device))

    def remove(self, connection: LocalConnection) -> None:
        """Forget a connection, unless a newer one of the same device already took its place."""
        if self._by_device.get(connection.key) is connection:
            del self._by_device[connection.key]
            self._metrics.connections.set(len(self._by_device))
        if not self._by_device:
            self._empty.set()

    def close_all(self, why: DisconnectReason) -> None:
        self.accepting = False
        for connection in self:
            connection.close(why)

    async def wait_empty(self) -> None:
        await self._empty.wait()
