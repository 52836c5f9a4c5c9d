"""The Media Service's one settings object. Every default here is the documented local default."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from media_service.cdn import load_rsa_private_key
from shared.content_types import MEDIA_TYPE_OF
from shared.lifecycle import LifecycleSettings
from shared.models import MediaType
from shared.settings import Port, ServiceSettings

MIB = 1024 * 1024
# S3's own bounds on multipart uploads.
S3_MIN_PART_BYTES = 5 * MIB
S3_MAX_PARTS = 10_000


class Settings(ServiceSettings, LifecycleSettings):
    """The service's settings, with media lifetime's (`shared.lifecycle`: the sweeper's and the
    bucket rules' one source) mixed in."""

    bind_port: Port = 8081
    # The address clients reach this service at, for the links it writes (HLS playlists).
    # None: the request's own base URL (fine locally; behind a proxy, set it).
    public_url: str | None = None

    # Upload slots
    single_upload_ttl_seconds: int = Field(300, ge=30, le=3600)
    multipart_threshold_bytes: int = Field(16 * MIB, ge=S3_MIN_PART_BYTES)
    multipart_part_size_bytes: int = Field(8 * MIB, ge=S3_MIN_PART_BYTES, le=5 * 1024 * MIB)
    part_url_ttl_seconds: int = Field(900, ge=30, le=7 * 24 * 3600)

    # What may be uploaded, and how much of it
    allowed_content_types: list[str] = Field(default_factory=lambda: sorted(MEDIA_TYPE_OF))
    max_image_bytes: int = Field(25 * MIB, ge=1)
    max_voice_bytes: int = Field(25 * MIB, ge=1)
    max_video_bytes: int = Field(2048 * MIB, ge=1)
    max_document_bytes: int = Field(100 * MIB, ge=1)

    # Per-user limits
    # Verified bytes plus pending declared bytes a user may hold (shared.usage): 10 GiB.
    quota_bytes_per_user: int = Field(10 * 1024 * MIB, ge=1)
    max_pending_uploads: int = Field(20, ge=1)
    slot_rate_per_minute: int = Field(60, ge=1)

    # A slot or challenge unused this long after it expired is settled as `expired` when next read.
    expiry_grace_seconds: int = Field(600, ge=0, le=24 * 3600)

    # Deduplication proofs
    proof_ttl_seconds: int = Field(300, ge=10, le=3600)
    dedup_proof_bytes: int = Field(64 * 1024, ge=16, le=MIB)

    # Downloads
    download_url_ttl_seconds: int = Field(300, ge=10, le=7 * 24 * 3600)
    # An HLS playback link, and every rendition and segment URL behind it, lives for the video's
    # duration plus this (API.md v1.1), so playback that starts late still reaches the end.
    hls_playback_grace_seconds: int = Field(600, ge=0, le=24 * 3600)

    # The S3 endpoint that presigned URLs name, when clients reach storage at another address
    # than this service does (compose: http://localhost:4566 while calls go to localstack:4566).
    # None: URLs name the endpoint the service calls. Used for signing only, never called.
    s3_public_endpoint_url: str | None = Field(None, pattern=r"^https?://")

    # CloudFront's URL in front of the bucket: with CDN_KEY_PAIR_ID and CDN_PRIVATE_KEY, download
    # URLs (originals, variants, HLS segments) are signed for the CDN; uploads always go to S3.
    cdn_base_url: str | None = Field(None, pattern=r"^https?://")
    # The id of the CloudFront public key (in the distribution's trusted key group).
    cdn_key_pair_id: str | None = None
    # The matching RSA private key, PEM (a secret; `\n` escapes count as newlines).
    cdn_private_key: SecretStr | None = None

    # Who else may read a media: the Message Service knows conversations (None: owner only).
    message_service_url: str | None = None
    internal_call_timeout_seconds: float = Field(3.0, gt=0)

    @model_validator(mode="after")
    def _allow_list_is_known(self) -> Self:
        unknown = sorted(set(self.allowed_content_types) - set(MEDIA_TYPE_OF))
        if unknown:
            raise ValueError(f"ALLOWED_CONTENT_TYPES names unknown types: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _cdn_all_or_nothing(self) -> Self:
        given = [self.cdn_base_url, self.cdn_key_pair_id, self.cdn_private_key]
        if any(value is not None for value in given) and not all(given):
            raise ValueError("CDN_BASE_URL, CDN_KEY_PAIR_ID and CDN_PRIVATE_KEY go together")
        if self.cdn_private_key is not None:
            load_rsa_private_key(self.cdn_private_key.get_secret_value())  # fail at start
        return self

    @property
    def cdn_enabled(self) -> bool:
        return self.cdn_base_url is not None

    def max_bytes(self, media_type: MediaType) -> int:
        return {
            MediaType.IMAGE: self.max_image_bytes,
            MediaType.VOICE: self.max_voice_bytes,
            MediaType.VIDEO: self.max_video_bytes,
            MediaType.DOCUMENT: self.max_document_bytes,
        }[media_type]
