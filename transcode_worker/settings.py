"""The Transcode Worker's one settings object. Every default here is the documented local default.

Environment names are the field names upper-cased (`QUEUE_WAIT_SECONDS`, `WORKER_CONCURRENCY`...).
"""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings

MIB = 1024 * 1024


class Settings(CommonSettings):
    bind_host: str = "127.0.0.1"
    bind_port: int = Field(8083, ge=0, le=65535)

    # How many messages are handled at once (each one streams an original).
    worker_concurrency: int = Field(4, ge=1, le=64)
    # SQS long polling: 20 s is SQS's maximum; 0 means short polling.
    queue_wait_seconds: int = Field(20, ge=0, le=20)
    # A message's visibility while it is handled; a heartbeat renews it every half of this.
    visibility_timeout_seconds: int = Field(60, ge=2, le=12 * 3600)
    # A failed message comes back after retry_base * 2**(receives - 1) seconds (at most 300).
    retry_base_seconds: float = Field(5.0, ge=0, le=300)
    # On stop, jobs in flight get this long to finish before they are cancelled.
    shutdown_grace_seconds: int = Field(30, ge=0, le=3600)
    # Originals are streamed in chunks of this size: memory per job stays bounded by it.
    read_chunk_bytes: int = Field(MIB, ge=1024, le=64 * MIB)
