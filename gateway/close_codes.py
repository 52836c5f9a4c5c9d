"""WebSocket close codes, and the one table from why the gateway ends a connection to what it
sends (RFC 6455 §7.4; 4000-4999 are the application's own, see docs/websocket.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

from gateway.metrics import DisconnectReason


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    NO_STATUS = 1005  # never on the wire: the peer's close frame carried no code
    ABNORMAL = 1006  # never on the wire: the TCP connection ended without a close frame
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    # ASGI's "service restart": what the app hears when the server is shutting down, whatever
    # code went on the wire, so the session can tell a shutdown from a client leaving.
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    REPLACED = 4000
    TOKEN_EXPIRED = 4001


@dataclass(frozen=True, slots=True)
class Closing:
    code: CloseCode
    text: str


# What the gateway sends when it ends a connection, by reason. The other reasons (the client
# closed, the connection was lost, the server refused a frame) leave nothing to send.
CLOSINGS: Mapping[DisconnectReason, Closing] = MappingProxyType(
    {
        DisconnectReason.REPLACED: Closing(CloseCode.REPLACED, "replaced by a newer connection"),
        DisconnectReason.SLOW_READER: Closing(
            CloseCode.TRY_AGAIN_LATER, "too many frames waiting; reconnect and read them"
        ),
        DisconnectReason.REGISTRY_LOST: Closing(
            CloseCode.TRY_AGAIN_LATER, "connection registry unavailable; reconnect"
        ),
        DisconnectReason.REGISTRY_UNAVAILABLE: Closing(
            CloseCode.TRY_AGAIN_LATER, "connection registry unavailable; reconnect shortly"
        ),
        DisconnectReason.SHUTDOWN: Closing(CloseCode.GOING_AWAY, "server shutting down"),
        DisconnectReason.SERVER_ERROR: Closing(CloseCode.INTERNAL_ERROR, "internal error"),
        DisconnectReason.TOKEN_EXPIRED: Closing(
            CloseCode.TOKEN_EXPIRED, "token expired; reconnect with a new token"
        ),
    }
)


def disconnect_reason(code: int) -> DisconnectReason:
    """Why the connection ended, from the code of the disconnect the server reported."""
    if code == CloseCode.MESSAGE_TOO_BIG:
        return DisconnectReason.FRAME_TOO_LARGE
    if code == CloseCode.SERVICE_RESTART:
        return DisconnectReason.SHUTDOWN
    if code in (CloseCode.NO_STATUS, CloseCode.ABNORMAL):
        return DisconnectReason.CONNECTION_LOST
    return DisconnectReason.CLIENT_CLOSED
