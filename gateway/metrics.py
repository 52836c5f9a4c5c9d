"""The gateway's operating signals (bounded labels only: never user, device or message ids)."""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS

# Frame types as they appear in the label; anything else counts as "other" (or "invalid" in).
INBOUND_TYPES = frozenset({"send", "received", "ping", "auth"})
OUTBOUND_TYPES = frozenset(
    {"message", "message_deleted", "media_update", "sent", "error", "pong", "authenticated"}
)
# The other bounded label values, created at start.
SEND_ERROR_KINDS = ("rate_limited", "rejected", "unavailable")
PUSH_OUTCOMES = ("delivered", "not_connected")
REGISTRY_OPERATIONS = ("register", "heartbeat", "deregister")


class DisconnectReason(StrEnum):
    """Why a connection ended: the `reason` label of `ferry_ws_disconnects_total`."""

    CLIENT_CLOSED = "client_closed"  # the client sent a close frame
    CONNECTION_LOST = "connection_lost"  # TCP went away without a closing handshake
    FRAME_TOO_LARGE = "frame_too_large"  # the server refused an oversized frame (1009)
    REPLACED = "replaced"  # the same device connected again (here or on another gateway)
    SLOW_READER = "slow_reader"  # the outbound queue filled up
    REGISTRY_LOST = "registry_lost"  # its registry row could not be kept alive
    REGISTRY_UNAVAILABLE = "registry_unavailable"  # it could not be registered at all
    SHUTDOWN = "shutdown"  # this gateway is stopping
    SERVER_ERROR = "server_error"  # a bug: logged with its traceback
    TOKEN_EXPIRED = "token_expired"  # its token expired and no `auth` frame extended it (4001)


def inbound_label(frame_type: str | None) -> str:
    return frame_type if frame_type in INBOUND_TYPES else "invalid"


def outbound_label(frame_type: object) -> str:
    return frame_type if isinstance(frame_type, str) and frame_type in OUTBOUND_TYPES else "other"


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections = Gauge(
            "ferry_ws_connections",
            "WebSocket connections open on this gateway",
            registry=registry,
        )
        self.frames = Counter(
            "ferry_ws_frames_total",
            "WebSocket frames, by direction (in: from clients, out: to clients) and type",
            ["direction", "type"],
            registry=registry,
        )
        self.send_latency = Histogram(
            "ferry_ws_send_seconds",
            "Send latency: a `send` frame received until its `sent` frame is queued",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.disconnects = Counter(
            "ferry_ws_disconnects_total",
            "WebSocket connections ended, by reason",
            ["reason"],
            registry=registry,
        )
        self.send_errors = Counter(
            "ferry_ws_send_errors_total",
            "Sends answered with an error frame, by kind (rate_limited, rejected, unavailable)",
            ["kind"],
            registry=registry,
        )
        self.pushes = Counter(
            "ferry_ws_push_deliveries_total",
            "Frames pushed by the Message Service, by outcome (delivered, not_connected)",
            ["outcome"],
            registry=registry,
        )
        self.pending_fetch_failures = Counter(
            "ferry_ws_pending_fetch_failures_total",
            "Connections whose pending messages could not be fetched (they come on reconnect)",
            registry=registry,
        )
        self.registry_errors = Counter(
            "ferry_ws_registry_errors_total",
            "Connection registry calls that failed, by operation",
            ["operation"],
            registry=registry,
        )
        # Zero series exist from the start, so rates work before the first event.
        for reason in DisconnectReason:
            self.disconnects.labels(reason.value)
        for frame_type in (*INBOUND_TYPES, "invalid"):
            self.frames.labels("in", frame_type)
        for frame_type in (*OUTBOUND_TYPES, "other"):
            self.frames.labels("out", frame_type)
        for kind in SEND_ERROR_KINDS:
            self.send_errors.labels(kind)
        for outcome in PUSH_OUTCOMES:
            self.pushes.labels(outcome)
        for operation in REGISTRY_OPERATIONS:
            self.registry_errors.labels(operation)
