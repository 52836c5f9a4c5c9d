"""The connections this gateway holds: one `LocalConnection` per (user, device), and its writer.

Every frame for a client goes through its connection's bounded queue, drained by one writer
task. Nothing waits for a slow client: a frame that finds the queue full disconnects the client
instead (close code 1013), so a client that stops reading costs at most `outbound_queue_frames`
frames of memory. The frames are serialized once, when queued.

While a new connection's pending messages are being fetched, live frames are held back (and
deduplicated by `message_id` against the pending ones), so the client sees its backlog first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from gateway.close_codes import CLOSINGS
from gateway.metrics import DisconnectReason, GatewayMetrics, outbound_label
from shared.connections import Connection
from shared.frames import Frame

log = logging.getLogger("ferry.gateway.connections")


class ClientGone(Exception):
    """The client's side of the connection is closed: nothing more can be written to it."""


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


SendText = Callable[[str], Awaitable[None]]
# The queue item that tells the writer the backlog is ready (never an outbound frame label).
_BACKLOG = "__backlog__"


class LocalConnection:
    """One client connection on this gateway: its registry row, outbound queue and close state."""

    def __init__(
        self,
        row: Connection,
        *,
        queue_frames: int,
        metrics: GatewayMetrics,
    ) -> None:
        self.row = row
        self._metrics = metrics
        # The outbound queue, as (metric label, text). A list and a future rather than an
        # asyncio.Queue (and an Event below): idle connections are the common case, and each
        # deque those allocate costs ~0.75 KiB per connection. Pops from the front of a list
        # of at most `queue_frames` items are cheap enough.
        self._limit = queue_frames
        self._frames: list[tuple[str, str]] = []
        self._wakeup: asyncio.Future[None] | None = None
        # Open until the pending messages are queued (see `deliver_pending`).
        self._window: PendingWindow | None = PendingWindow(queue_frames)
        self._backlog: list[dict[str, Any]] | None = None
        self._closed: asyncio.Future[None] | None = None
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

    def renewed(self, expires_at: int) -> Connection:
        """The registry row with a later expiry (kept here once the registry accepts it)."""
        return replace(self.row, expires_at=expires_at)

    # --- closing ------------------------------------------------------------------------------

    def close(self, why: DisconnectReason) -> None:
        """Ask the session to end this connection with the close frame `CLOSINGS` gives `why`;
        the first request wins, later ones are no-ops.

        Safe from anywhere (a push, the heartbeat, shutdown): the session does the closing.
        """
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
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def wait_closing(self) -> CloseRequest:
        if self.close_request is None:
            self._closed = asyncio.get_running_loop().create_future()
            await self._closed
        assert self.close_request is not None
        return self.close_request

    # --- frames to the client -----------------------------------------------------------------

    def push(self, frame: dict[str, Any]) -> bool:
        """Queue a live frame from the Message Service; False if it will not reach the client."""
        if self.closing:
            return False
        if self._window is not None:
            if self._window.hold(frame):
                return True
            self._overflow("too many live frames while the backlog was fetched")
            return False
        return self._offer(outbound_label(frame.get("type")), encode(frame))

    def reply(self, frame: Frame) -> bool:
        """Queue one of the gateway's own frames (`sent`, `error`, `pong`)."""
        if self.closing:
            return False
        frame_type = getattr(frame, "type", None)
        return self._offer(outbound_label(frame_type), frame.model_dump_json(exclude_none=True))

    def _offer(self, label: str, text: str) -> bool:
        if len(self._frames) >= self._limit:
            self._overflow("the client does not read its frames")
            return False
        self._frames.append((label, text))
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        return True

    async def _next(self) -> tuple[str, str]:
        while not self._frames:
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        return self._frames.pop(0)

    def _overflow(self, why: str) -> None:
        log.warning(
            "closing a connection: %s",
            why,
            extra={"user_id": self.row.user_id, "device_id": self.row.device_id},
        )
        self.close(DisconnectReason.SLOW_READER)

    def deliver_pending(self, messages: list[dict[str, Any]]) -> None:
        """Hand the backlog to the writer: it sends it, then the frames held meanwhile.

        Called with no messages when the backlog could not be fetched (it comes on reconnect).
        The writer sends the backlog straight to the socket (paced by the client's reading),
        not through the queue: a long backlog is no sign of a slow reader, and replies
        (`pong`, `sent`) must still find room in the queue meanwhile.
        """
        if self._window is None or self._backlog is not None:
            return
        self._backlog = messages
        self._offer(_BACKLOG, "")

    async def write_loop(self, send_text: SendText) -> None:
        """Drain the queue to the client until cancelled; `ClientGone` ends the connection."""
        try:
            while True:
                label, text = await self._next()
                if label == _BACKLOG:
                    await self._send_backlog(send_text)
                else:
                    await self._send(send_text, label, text)
        except ClientGone:
            self.ended(DisconnectReason.CONNECTION_LOST)

    async def _send(self, send_text: SendText, label: str, text: str) -> None:
        await send_text(text)
        self._metrics.frames.labels("out", label).inc()

    async def _send_backlog(self, send_text: SendText) -> None:
        window, backlog = self._window, self._backlog or []
        self._backlog = []
        if window is None:
            return
        for message in backlog:
            frame = backlog_frame(message)
            if window.first_sight(frame):
                await self._send(send_text, outbound_label(frame["type"]), encode(frame))
        # Frames may be held while we send; no await between the last empty batch and
        # opening the gate, so no live frame can slip past the ones held before it.
        while batch := window.take_held():
            for frame in batch:
                await self._send(send_text, outbound_label(frame.get("type")), encode(frame))
        self._window = None


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
