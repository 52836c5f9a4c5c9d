"""The Media Service's use cases wired to in-memory stand-ins (`tests.fakes`), for unit tests."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from prometheus_client import CollectorRegistry

from media_service.access import AccessPolicy
from media_service.hls import PlaylistSigner
from media_service.lookup import MediaLookup
from media_service.metrics import MediaMetrics
from media_service.parts import MediaParts
from media_service.serving import Serving
from media_service.settings import Settings
from media_service.uploads import Uploads
from media_service.user_counters import SlotLimits
from shared import keys
from shared.clock import utcnow
from shared.errors import RateLimited
from shared.media_records import BlobRecord, MediaRecord
from shared.models import MediaState, MediaType, UploadRequest
from tests.fakes import FakeLifecycle, FakeMediaBucket, FakeMediaRecords, FakeReclaimer

OWNER = "alice"
MIB = 1024 * 1024


class PendingOnly:
    """`UserCounters` without the rate: the pending cap from the true count, then the row put
    like `MediaRecords.create` would."""

    def __init__(self, records: FakeMediaRecords) -> None:
        self.records = records

    async def admit(
        self,
        owner: str,
        *,
        limits: SlotLimits,
        count_pending: Callable[[], Awaitable[int]],
        create: MediaRecord | None = None,
        **_: object,
    ) -> None:
        if await count_pending() >= limits.max_pending:
            raise RateLimited(
                "too many pending", retry_after_seconds=30, code="too_many_pending_uploads"
            )
        if create is not None:
            await self.records.create(create)


class MediaWorld:
    def __init__(self, **settings: object) -> None:
        self.settings = Settings.model_validate(settings)
        self.records = FakeMediaRecords()
        self.bucket = FakeMediaBucket()
        self.registry = CollectorRegistry()
        self.lifecycle = FakeLifecycle()
        lookup = MediaLookup(
            records=self.records,  # type: ignore[arg-type]
            bucket=self.bucket,  # type: ignore[arg-type]
            expiry_grace=timedelta(seconds=self.settings.expiry_grace_seconds),
        )
        parts = MediaParts(
            settings=self.settings,
            records=self.records,  # type: ignore[arg-type]
            bucket=self.bucket,  # type: ignore[arg-type]
            lookup=lookup,
            access=AccessPolicy(None),
            metrics=MediaMetrics(self.registry),
            lifecycle=self.lifecycle,  # type: ignore[arg-type]
            reclaimer=FakeReclaimer(self.records, self.bucket),  # type: ignore[arg-type]
            holds=None,  # type: ignore[arg-type]
        )
        self.uploads = Uploads(parts, counters=PendingOnly(self.records))  # type: ignore[arg-type]
        self.serving = Serving(parts, playlist_signer=PlaylistSigner("unit-test-secret"))

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def stored(self, data: bytes, content_type: str = "image/jpeg") -> BlobRecord:
        """Bytes some earlier upload left verified and ready: a dedup candidate."""
        sha256 = hashlib.sha256(data).hexdigest()
        key = f"o/m_earlier_{sha256[:8]}"
        self.bucket.objects[key] = data
        blob = BlobRecord(
            blob_key=keys.blob_key(MediaType.IMAGE.value, sha256),
            sha256=sha256,
            object_key=key,
            version_id="v1",
            size=len(data),
            content_type=content_type,
            media_type=MediaType.IMAGE,
            refcount=1,
            first_media_id="m_earlier",
            created_at=utcnow(),
            outcome=MediaState.READY,
        )
        self.records.blobs[blob.blob_key] = blob
        return blob

    def settle(self, media_id: str, state: MediaState, **fields: object) -> MediaRecord:
        """Move a record as the worker would have (bypassing the state machine)."""
        document = self.records.media[media_id].model_dump()
        document.update(state=state, pending_owner=None, **fields)
        self.records.media[media_id] = MediaRecord.model_validate(document)
        return self.records.media[media_id]


def request(
    data: bytes, content_type: str = "image/jpeg", size: int | None = None
) -> UploadRequest:
    return UploadRequest(
        content_type=content_type,
        size=len(data) if size is None else size,
        sha256=hashlib.sha256(data).hexdigest(),
    )
