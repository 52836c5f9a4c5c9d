"""The Message Service's one settings object; every default is the documented local default."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Port, ServiceSettings


class Settings(ServiceSettings):
    bind_port: Port = 8082

    media_service_url: str = "http://127.0.0.1:8081"
    internal_call_timeout_seconds: float = Field(3.0, gt=0)
    push_timeout_seconds: float = Field(3.0, gt=0)

    max_members: int = Field(100, ge=2, le=1000)
    history_page_limit: int = Field(100, ge=1, le=1000)
    conversation_page_limit: int = Field(100, ge=1, le=1000)

    # Per-user limits (429 `rate_limited` with Retry-After, shared by every instance).
    # HTTP sends: the same budget a WebSocket connection has at the gateway (same names).
    send_rate_per_second: float = Field(20, gt=0)
    send_burst: int = Field(40, ge=1)
    conversation_rate_per_minute: int = Field(30, ge=1)
    # A token for one more device than this gets 403 `too_many_devices`.
    max_devices_per_user: int = Field(10, ge=1, le=1000)
    # How long an instance trusts a device it admitted before asking DynamoDB again.
    device_cache_seconds: float = Field(30, ge=0)

    # Sends stored but never fanned out (the process died in between) are fanned out by a loop
    # that runs every `fanout_repair_interval_seconds` (and at start), once they are this old.
    fanout_repair_interval_seconds: float = Field(5, gt=0)
    fanout_repair_grace_seconds: float = Field(3, ge=0)

    # The media-events queue consumer
    queue_wait_seconds: int = Field(20, ge=0, le=20)
    visibility_timeout_seconds: int = Field(60, ge=5)
    retry_base_seconds: float = Field(5.0, ge=0)
    consumer_concurrency: int = Field(4, ge=1, le=64)
