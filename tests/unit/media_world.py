"""The Media Service's use cases wired to in-memory stand-ins (`tests.fakes`), for unit tests."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, cast

from prometheus_client import CollectorRegistry

from media_service.access import AccessPolicy
from media_service.hls import PlaylistSigner
from media_service.lifecycle_records import USER_HOLD_PREFIX
from media_service.lookup import MediaLookup
from media_service.metrics import MediaMetrics
from media_service.parts import MediaParts
from media_service.serving import Serving
from media_service.settings import Settings
from media_service.slot_guards import Guard, deduplicable
from media_service.uploads import Uploads
from media_service.user_counters import SlotLimits
from shared import keys
from shared.clock import utcnow
from shared.dynamo import to_item
from shared.errors import RateLimited
from shared.media_records import BlobRecord, MediaRecord
from shared.models import MediaState, MediaType, UploadRequest
from tests.fakes import FakeLifecycle, FakeMediaBucket, FakeMediaRecords, FakeReclaimer

OWNER = "alice"
MIB = 1024 * 1024


class PendingOnly:
    """`UserCounters` without the rate: the pending cap from the true count, the slot's guards
    checked against the fakes as DynamoDB would check their conditions, then the row put like
    `MediaRecords.create` would."""

    def __init__(self, records: FakeMediaRecords, lifecycle: FakeLifecycle) -> None:
        self.records = records
        self.lifecycle = lifecycle

    async def admit(
        self,
        owner: str,
        *,
        limits: SlotLimits,
        count_pending: Callable[[], Awaitable[int]],
        create: MediaRecord | None = None,
        guards: Sequence[Guard] = (),
        **_: object,
    ) -> None:
        if await count_pending() >= limits.max_pending:
            raise RateLimited(
                "too many pending", retry_after_seconds=30, code="too_many_pending_uploads"
            )
        for guard in guards:
            refused, item = self._check(guard)
            if refused:
                raise guard.refused(item)
        if create is not None:
            await self.records.create(create)

    def _check(self, guard: Guard) -> tuple[bool, dict[str, Any] | None]:
        """Whether `guard`'s condition refuses, and the item it hands back (ALL_OLD)."""
        check = cast(dict[str, Any], guard.item).get("ConditionCheck")
        if check is None:
            return False, None  # the fake counts no usage
        key = next(iter(check["Key"].values()))["S"]
        if check["TableName"] == self.records.blobs_table:
            blob = self.records.blobs.get(key)
            values = check["ExpressionAttributeValues"]
            asked = UploadRequest(
                content_type=values[":type"]["S"],
                size=int(values[":size"]["N"]),
                sha256=blob.sha256 if blob else "0" * 64,
            )
            if blob is None or not deduplicable(blob, asked):
                return False, None
            return True, to_item(blob.model_dump(mode="json", exclude_none=True))
        reason = self.lifecycle.user_holds.get(key.removeprefix(USER_HOLD_PREFIX))
        if reason is None:
            return False, None
        return True, {"media_id": {"S": key}, "reason": {"S": reason}}


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
        self.uploads = Uploads(parts, counters=PendingOnly(self.records, self.lifecycle))  # type: ignore[arg-type]
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
