"""The Media Service's one settings object. Every default here is the documented local default."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from shared.content_types import MEDIA_TYPE_OF
from shared.models import MediaType
from shared.settings import CommonSettings

MIB = 1024 * 1024
# S3's own bounds on multipart uploads.
S3_MIN_PART_BYTES = 5 * MIB
S3_MAX_PARTS = 10_000


class Settings(CommonSettings):
    bind_host: str = "127.0.0.1"
    bind_port: int = 8081

    # Upload slots
    single_upload_ttl_seconds: int = Field(300, ge=30, le=3600)
    multipart_threshold_bytes: int = Field(16 * MIB, ge=S3_MIN_PART_BYTES)
    multipart_part_size_bytes: int = Field(8 * MIB, ge=S3_MIN_PART_BYTES, le=5 * 1024 * MIB)
    multipart_ttl_seconds: int = Field(24 * 3600, ge=300)
    part_url_ttl_seconds: int = Field(900, ge=30, le=7 * 24 * 3600)

    # What may be uploaded, and how much of it
    allowed_content_types: list[str] = Field(default_factory=lambda: sorted(MEDIA_TYPE_OF))
    max_image_bytes: int = Field(25 * MIB, ge=1)
    max_voice_bytes: int = Field(25 * MIB, ge=1)
    max_video_bytes: int = Field(2048 * MIB, ge=1)
    max_document_bytes: int = Field(100 * MIB, ge=1)

    # Per-user limits
    max_pending_uploads: int = Field(20, ge=1)
    slot_rate_per_minute: int = Field(60, ge=1)

    # Deduplication proofs
    proof_ttl_seconds: int = Field(300, ge=10, le=3600)
    dedup_proof_bytes: int = Field(64 * 1024, ge=16, le=MIB)

    # Downloads
    download_url_ttl_seconds: int = Field(300, ge=10, le=7 * 24 * 3600)

    # Who else may read a media: the Message Service knows conversations (None: owner only).
    message_service_url: str | None = None
    internal_call_timeout_seconds: float = Field(3.0, gt=0)

    @model_validator(mode="after")
    def _allow_list_is_known(self) -> Self:
        unknown = sorted(set(self.allowed_content_types) - set(MEDIA_TYPE_OF))
        if unknown:
            raise ValueError(f"ALLOWED_CONTENT_TYPES names unknown types: {', '.join(unknown)}")
        return self

    def max_bytes(self, media_type: MediaType) -> int:
        return {
            MediaType.IMAGE: self.max_image_bytes,
            MediaType.VOICE: self.max_voice_bytes,
            MediaType.VIDEO: self.max_video_bytes,
            MediaType.DOCUMENT: self.max_document_bytes,
        }[media_type]
