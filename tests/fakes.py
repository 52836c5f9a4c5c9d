"""In-memory stand-ins shared by the unit tests.

AWS clients (`FakeSqs`) implement only the calls our code makes, with botocore's names; the
stores (`FakeMediaRecords`, `FakeMediaBucket`) apply the same rules as the real ones (the state
machine of `shared.media_states`, the reference counts of `MediaRecords`). Everything that talks
to AWS for real is covered by the integration tests against the emulator.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import EndpointConnectionError

from media_service.lifecycle_storage import Deleted
from media_service.storage import SignedRequest
from shared.clock import utcnow
from shared.media_records import BlobRecord, Challenge, MediaRecord, StaleTransition, StoredVariant
from shared.media_states import sources_of
from shared.models import ErrorDetail, MediaState, ReceivedPart
from shared.usage import QuotaExceeded

if TYPE_CHECKING:
    from types_aiobotocore_sqs.client import SQSClient

FAKE_SQS_ENDPOINT = "http://sqs.local"


class FakeSqs:
    """Just enough SQS for the consumer (receive, delete, visibility) and the depth sampler
    (queue URLs, attributes).

    `receive_message` long-polls until a message is `put` (only cancellation ends it early).
    `down` makes the attribute calls fail as if SQS were unreachable; `hang` makes
    `get_queue_attributes` never answer.
    """

    def __init__(self) -> None:
        # The consumer's side.
        self.waiting: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.receives: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.visibility: list[tuple[str, int]] = []
        self._ids = itertools.count(1)
        # The sampler's side: attributes by queue name.
        self.attributes: dict[str, dict[str, str]] = {}
        self.down = False
        self.hang = False
        self.url_lookups = 0
        self.calls = 0  # get_queue_attributes calls

    @property
    def client(self) -> SQSClient:
        """This fake where code takes the real client. A cast: the fake has only the calls our
        code makes, not the whole client the stubs describe."""
        return cast("SQSClient", self)

    # --- messages --------------------------------------------------------------------------

    def put(self, body: str, *, receive_count: int = 1) -> str:
        """Enqueue a message; returns its receipt handle."""
        handle = f"handle-{next(self._ids)}"
        self.waiting.append(
            {
                "MessageId": handle.replace("handle", "id"),
                "ReceiptHandle": handle,
                "Body": body,
                "Attributes": {"ApproximateReceiveCount": str(receive_count)},
            }
        )
        self.arrived.set()
        return handle

    async def receive_message(self, **request: Any) -> dict[str, Any]:
        self.receives.append(request)
        while not self.waiting:
            self.arrived.clear()
            await self.arrived.wait()  # a long poll: only cancellation ends it early
        count = request["MaxNumberOfMessages"]
        taken, self.waiting = self.waiting[:count], self.waiting[count:]
        return {"Messages": taken}

    async def delete_message(self, *, QueueUrl: str, ReceiptHandle: str) -> None:  # noqa: N803
        self.deleted.append(ReceiptHandle)

    async def change_message_visibility(
        self,
        *,
        QueueUrl: str,  # noqa: N803
        ReceiptHandle: str,  # noqa: N803
        VisibilityTimeout: int,  # noqa: N803
    ) -> None:
        self.visibility.append((ReceiptHandle, VisibilityTimeout))

    # --- queues and their attributes -----------------------------------------------------------

    @staticmethod
    def url(name: str) -> str:
        return f"{FAKE_SQS_ENDPOINT}/123/{name}"

    async def get_queue_url(self, QueueName: str) -> dict[str, Any]:  # noqa: N803 - boto's name
        self.url_lookups += 1
        if self.down:
            raise EndpointConnectionError(endpoint_url=FAKE_SQS_ENDPOINT)
        return {"QueueUrl": self.url(QueueName)}

    async def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> Any:  # noqa: N803
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.down:
            raise EndpointConnectionError(endpoint_url=FAKE_SQS_ENDPOINT)
        return {"Attributes": self.attributes.get(QueueUrl.rsplit("/", 1)[1], {})}


class FakeMediaRecords:
    """`shared.media_records.MediaRecords` over dicts."""

    media_table = "media"
    blobs_table = "blobs"

    def __init__(self) -> None:
        self.media: dict[str, MediaRecord] = {}
        self.blobs: dict[str, BlobRecord] = {}
        # Every commit loses a race (as when another worker committed first).
        self.stale_commits = False

    # --- reads -----------------------------------------------------------------------------

    async def get(self, media_id: str) -> MediaRecord | None:
        return self.media.get(media_id)

    async def get_blob(self, blob_key: str) -> BlobRecord | None:
        return self.blobs.get(blob_key)

    async def count_pending(self, owner: str, now: datetime, limit: int) -> int:
        pending = [
            record
            for record in self.media.values()
            if record.pending_owner == owner
            and record.upload_expires_at is not None
            and record.upload_expires_at > now
        ]
        return min(limit, len(pending))

    # --- writes ----------------------------------------------------------------------------

    def counted_slot(
        self, record: MediaRecord, quota_bytes: int | None
    ) -> tuple[MediaRecord, None]:
        """Usage is not counted by the fake (tests/integration/test_governance.py covers it)."""
        return record, None

    def quota_refusal(self, record: MediaRecord, quota_bytes: int | None) -> Exception:
        return QuotaExceeded(f"over {quota_bytes}")

    def create_request(self, record: MediaRecord) -> MediaRecord:
        """The fake's "put request" is the record itself (`NoSlotLimits` creates it)."""
        return record

    async def create(self, record: MediaRecord, *, quota_bytes: int | None = None) -> None:
        """Usage is not counted here (tests/integration/test_governance.py covers it)."""
        if record.media_id in self.media:
            raise StaleTransition(f"{record.media_id} exists")
        self.media[record.media_id] = record

    def _update(self, media_id: str, **fields: Any) -> MediaRecord:
        document = self.media[media_id].model_dump()
        document.update(fields)
        self.media[media_id] = MediaRecord.model_validate(document)
        return self.media[media_id]

    async def transition(
        self,
        media_id: str,
        target: MediaState,
        *,
        set_fields: dict[str, Any] | None = None,
        remove_fields: tuple[str, ...] = (),
        only_from: frozenset[MediaState] | None = None,
    ) -> MediaRecord:
        sources = sources_of(target) if only_from is None else only_from & sources_of(target)
        record = self.media.get(media_id)
        if record is None or record.state not in sources:
            raise StaleTransition(media_id)
        given = {key: value for key, value in (set_fields or {}).items() if value is not None}
        return self._update(
            media_id,
            **given,
            **dict.fromkeys(remove_fields),
            state=target,
            updated_at=utcnow(),
        )

    async def fail(
        self,
        media_id: str,
        code: str,
        message: str,
        *,
        only_from: frozenset[MediaState] | None = None,
    ) -> MediaRecord:
        return await self.transition(
            media_id,
            MediaState.FAILED,
            set_fields={"error": {"code": code, "message": message}},
            remove_fields=("pending_owner", "challenge"),
            only_from=only_from,
        )

    async def set_progress(self, media_id: str, percent: int) -> None:
        record = self.media.get(media_id)
        if record is not None and record.state is MediaState.PROCESSING:
            self._update(media_id, progress=percent)

    async def take_challenge(self, media_id: str) -> Challenge:
        record = self.media.get(media_id)
        if record is None or record.state is not MediaState.AWAITING_PROOF:
            raise StaleTransition(f"{media_id} has no open challenge")
        if record.challenge is None:
            raise StaleTransition(f"{media_id} has no open challenge")
        self._update(media_id, challenge=None)
        return record.challenge

    async def commit_upload(self, record: MediaRecord, *, version_id: str | None) -> MediaRecord:
        if self.stale_commits:
            raise StaleTransition(record.media_id)
        committed = await self.transition(
            record.media_id,
            MediaState.UPLOADED,
            set_fields={"version_id": version_id, "blob_ref": True},
            remove_fields=("pending_owner",),
            only_from=frozenset({MediaState.AWAITING_UPLOAD}),
        )
        blob = self.blobs.get(record.blob_key)
        if blob is not None:  # the first upload's fields stay
            self.blobs[record.blob_key] = blob.model_copy(update={"refcount": blob.refcount + 1})
            return committed
        self.blobs[record.blob_key] = BlobRecord(
            blob_key=record.blob_key,
            sha256=record.sha256,
            object_key=record.object_key,
            version_id=version_id,
            size=record.size,
            content_type=record.content_type,
            media_type=record.media_type,
            refcount=1,
            first_media_id=record.media_id,
            created_at=utcnow(),
        )
        return committed

    async def settle_blob(
        self,
        blob_key: str,
        outcome: MediaState,
        meta: dict[str, Any],
        variants: list[StoredVariant],
        *,
        error: ErrorDetail | None = None,
        nsfw_score: float | None = None,
    ) -> None:
        blob = self.blobs[blob_key]
        self.blobs[blob_key] = blob.model_copy(
            update={
                "outcome": outcome,
                "meta": meta,
                "variants": variants,
                "error": error,
                "nsfw_score": nsfw_score,
            }
        )

    async def attach_to_blob(self, record: MediaRecord, blob: BlobRecord) -> MediaRecord:
        current = self.blobs.get(blob.blob_key)
        if blob.outcome is None or current is None or current.refcount <= 0:
            raise StaleTransition(f"blob {blob.blob_key} cannot be shared")
        attached = await self.transition(
            record.media_id,
            blob.outcome,
            set_fields={
                "object_key": blob.object_key,
                "version_id": blob.version_id,
                "meta": blob.meta,
                "variants": blob.variants,
                "error": blob.error,
                "nsfw_score": blob.nsfw_score,
                "blob_ref": True,
            },
            remove_fields=("challenge", "pending_owner"),
            only_from=frozenset({MediaState.AWAITING_PROOF}),
        )
        self.blobs[blob.blob_key] = current.model_copy(update={"refcount": current.refcount + 1})
        return attached

    async def delete(self, record: MediaRecord) -> int | None:
        current = self.media.get(record.media_id)
        if current is None or current.state is not record.state:
            raise StaleTransition(f"{record.media_id}: a guarded write did not apply")
        del self.media[record.media_id]
        if not record.blob_ref:
            return None
        blob = self.blobs[record.blob_key]
        self.blobs[record.blob_key] = blob.model_copy(update={"refcount": blob.refcount - 1})
        return blob.refcount - 1

    async def forget_blob(self, blob_key: str) -> bool:
        blob = self.blobs.get(blob_key)
        if blob is None or blob.refcount > 0:
            return False
        del self.blobs[blob_key]
        return True


class FakeMediaBucket:
    """`media_service.storage.MediaBucket` over dicts: objects by key, multipart sessions by id.

    URLs are fake (`fake://...`); what a test asserts is which keys were signed and deleted."""

    def __init__(self) -> None:
        self.archived_keys: set[str] = set()  # originals in a class needing a restore
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, str] = {}  # open multipart session → its key
        self.parts: dict[str, list[ReceivedPart]] = {}
        self.aborted: list[str] = []
        self.completed: list[tuple[str, list[tuple[int, str]]]] = []
        self.deleted: list[tuple[str, str | None]] = []

    async def sign_put(
        self, key: str, *, content_type: str, size: int, sha256_hex: str, ttl_seconds: int
    ) -> SignedRequest:
        return SignedRequest(url=f"fake://put/{key}", headers={"Content-Type": content_type})

    async def start_multipart(self, key: str, *, content_type: str) -> str:
        upload_id = f"upload-{len(self.uploads) + 1}"
        self.uploads[upload_id] = key
        self.parts[upload_id] = []
        return upload_id

    async def sign_part(
        self, key: str, *, upload_id: str, part_number: int, length: int, ttl_seconds: int
    ) -> SignedRequest:
        return SignedRequest(url=f"fake://part/{key}/{upload_id}/{part_number}", headers={})

    async def received_parts(self, key: str, *, upload_id: str) -> list[ReceivedPart]:
        return list(self.parts.get(upload_id, []))

    async def complete_multipart(
        self, key: str, *, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        self.completed.append((key, parts))

    async def abort_multipart(self, key: str, *, upload_id: str) -> None:
        self.aborted.append(upload_id)
        self.uploads.pop(upload_id, None)

    async def read_range(
        self, key: str, *, version_id: str | None, offset: int, length: int
    ) -> bytes:
        return self.objects[key][offset : offset + length]

    async def read_text(self, key: str, *, limit: int) -> str:
        return self.objects[key][:limit].decode("utf-8")

    async def sign_get(
        self,
        key: str,
        *,
        version_id: str | None,
        ttl_seconds: int,
        content_type: str | None = None,
        download_name: str | None = None,
    ) -> str:
        return f"fake://get/{key}?version={version_id}"

    async def archived(self, key: str, *, version_id: str | None) -> bool:
        return key in self.archived_keys

    async def delete_version(self, key: str, *, version_id: str | None) -> None:
        self.deleted.append((key, version_id))
        self.objects.pop(key, None)


class FakeLifecycle:
    """`media_service.lifecycle_records.LifecycleRecords` as the upload path uses it."""

    def __init__(self) -> None:
        self.user_holds: dict[str, str] = {}
        self.owner_deleted: list[str] = []

    async def user_hold(self, user_id: str) -> dict[str, Any] | None:
        reason = self.user_holds.get(user_id)
        return None if reason is None else {"reason": reason}

    async def mark_owner_deleted(self, record: MediaRecord, now: datetime) -> None:
        self.owner_deleted.append(record.media_id)


class FakeReclaimer:
    """`media_service.reclaim.Reclaimer.delete_media` over the fakes above: the row (and its
    blob reference) first, then the session and the bytes nobody holds any more."""

    def __init__(self, records: FakeMediaRecords, bucket: FakeMediaBucket) -> None:
        self.records = records
        self.bucket = bucket

    async def delete_media(self, record: MediaRecord) -> Deleted:
        blob = await self.records.get_blob(record.blob_key)
        remaining = await self.records.delete(record)
        if record.upload_id:
            await self.bucket.abort_multipart(record.object_key, upload_id=record.upload_id)
        if remaining == 0 and blob is not None and await self.records.forget_blob(blob.blob_key):
            await self.bucket.delete_version(blob.object_key or "", version_id=blob.version_id)
        return Deleted()
