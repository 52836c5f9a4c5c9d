"""The Edge Gateway's one settings object. Every default here is the documented local default.

Environment names are the field names upper-cased (`MAX_FRAME_BYTES`, `SEND_BURST`...).
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from shared.settings import GraceSeconds, ServiceSettings


class Settings(ServiceSettings):
    # Where the Message Service reaches this instance (`POST /internal/push`); it is written
    # into the connection registry. None: `http://{bind_host}:{bind_port}`, right for one host.
    advertised_url: str | None = None
    message_service_url: str = "http://127.0.0.1:8082"
    media_service_url: str = "http://127.0.0.1:8081"

    web_client_enabled: bool = True
    public_media_url: str | None = None
    public_message_url: str | None = None

    # WebSocket protocol limits (enforced by the server before any frame reaches the app).
    max_frame_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Off by default: deflate keeps compression state per connection (tens of KiB each).
    permessage_deflate: bool = False
    ping_interval_seconds: float = Field(20, gt=0, le=600)
    ping_timeout_seconds: float = Field(20, gt=0, le=600)
    # How long a closing handshake may take before the TCP connection is aborted (a peer that
    # stopped reading would otherwise hold its unsent buffer forever).
    close_timeout_seconds: float = Field(5, gt=0, le=60)

    # Registry rows expire this long after their last heartbeat; heartbeats run every third.
    registry_ttl_seconds: int = Field(90, ge=3, le=3600)

    # Per-connection limits.
    send_rate_per_second: float = Field(20, gt=0)
    send_burst: int = Field(40, ge=1)
    # Frames waiting for a slow reader; a full queue disconnects it (memory stays bounded).
    outbound_queue_frames: int = Field(256, ge=1, le=65536)
    sends_in_flight_per_connection: int = Field(8, ge=1, le=256)

    # Calls to the Message Service.
    internal_call_timeout_seconds: float = Field(5, gt=0, le=60)
    pending_fetch_attempts: int = Field(3, ge=1, le=10)

    # On SIGTERM, uvicorn waits this long for sessions to end before cancelling them.
    shutdown_grace_seconds: GraceSeconds = 15

    @model_validator(mode="after")
    def _production_needs_a_reachable_address(self) -> Self:
        if self.environment == "production" and not self.advertised_url:
            # The bind address (often 0.0.0.0) is no address another host can call.
            raise ValueError("ADVERTISED_URL must be set in production")
        return self

    @property
    def public_url(self) -> str:
        """The URL written into the registry: how the Message Service reaches this instance."""
        url = self.advertised_url or f"http://{self.bind_host}:{self.bind_port}"
        return url.rstrip("/")

    @property
    def heartbeat_interval_seconds(self) -> float:
        return self.registry_ttl_seconds / 3
