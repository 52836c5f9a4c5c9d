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
    # A send claimed but never finished (its process died) may be taken over after this long.
    send_claim_stale_seconds: int = Field(30, ge=1)

    # The media-events queue consumer
    queue_wait_seconds: int = Field(20, ge=0, le=20)
    visibility_timeout_seconds: int = Field(60, ge=5)
    retry_base_seconds: float = Field(5.0, ge=0)
    consumer_concurrency: int = Field(4, ge=1, le=64)
