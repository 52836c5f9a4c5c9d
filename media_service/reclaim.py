"""Deleting and retiring media: the record first (a conditional write), storage second.

Shared bytes go only with their last holder: a blob's original when no media holds it any more
(`refcount`), its derivatives when no media holds them either (`retired_refs` too). Used by the
owner's DELETE and by the sweeper alike, so both follow one set of rules.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from media_service.lifecycle_records import LifecycleRecords
from media_service.lifecycle_storage import Deleted, LifecycleBucket, MultipartSession
from shared import keys
from shared.media_records import MediaRecord, MediaRecords
from shared.models import MediaEvent

log = logging.getLogger("ferry.media.reclaim")


class EventSink(Protocol):
    async def publish(self, event: MediaEvent) -> None: ...


class QueueEvents:
    """Media events on the media-events queue, as the worker sends them (the Message Service
    turns them into `media_update` frames for every conversation referencing the media)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    async def publish(self, event: MediaEvent) -> None:
        await self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=event.model_dump_json())


def media_event(record: MediaRecord) -> MediaEvent:
    return MediaEvent(
        media_id=record.media_id,
        state=record.visible_state,
        media_type=record.media_type,
        meta=record.meta,
        variants=[variant.public() for variant in record.variants],
        error=record.visible_error,
        occurred_at=record.updated_at,
    )


class Reclaimer:
    def __init__(
        self,
        *,
        records: MediaRecords,
        lifecycle: LifecycleRecords,
        storage: LifecycleBucket,
        events: EventSink | None = None,
    ) -> None:
        self.records = records
        self.lifecycle = lifecycle
        self.storage = storage
        self.events = events

    async def delete_media(self, record: MediaRecord) -> Deleted:
        """Delete a media (raises StaleTransition if it changed or is held meanwhile)."""
        blob = await self.records.get_blob(record.blob_key)
        await self.lifecycle.delete(record, blob)
        deleted = Deleted()
        if record.upload_id:
            await self.storage.abort(_session(record))
        shares_blob_key = blob is not None and blob.object_key == record.object_key
        if record.version_id and not shares_blob_key and record.upload_kind != "dedup":
            # Bytes that never became (or stopped being) the blob's: this media's alone.
            deleted.add(
                await self.storage.delete_key(
                    record.object_key, record.version_id, size=record.size
                )
            )
        if record.blob_ref or record.derivatives_ref:
            deleted.add(await self.release_blob(record.blob_key))
        return deleted

    async def retire_original(self, record: MediaRecord) -> tuple[MediaRecord, Deleted]:
        retired = await self.lifecycle.retire_original(record)
        if retired.state is not record.state and self.events is not None:
            await self.events.publish(media_event(retired))
        return retired, await self.release_blob(record.blob_key) if record.blob_ref else Deleted()

    async def retire_derivatives(self, record: MediaRecord) -> tuple[MediaRecord, Deleted]:
        retired = await self.lifecycle.retire_derivatives(record)
        if not record.derivatives_ref:
            return retired, Deleted()
        return retired, await self.release_blob(record.blob_key)

    async def release_blob(self, blob_key: str) -> Deleted:
        """Delete whatever of a blob nobody holds any more (each step conditional)."""
        deleted = Deleted()
        blob = await self.records.get_blob(blob_key)
        if blob is None or blob.refcount > 0:
            return deleted
        if blob.object_key and await self.lifecycle.drop_original(blob):
            deleted.add(
                await self.storage.delete_key(blob.object_key, blob.version_id, size=blob.size)
            )
        if blob.retired_refs <= 0 and await self.records.forget_blob(blob_key):
            deleted.add(await self.storage.delete_prefix(keys.derivative_prefix(blob_key)))
        return deleted


def _session(record: MediaRecord) -> MultipartSession:
    return MultipartSession(
        key=record.object_key, upload_id=record.upload_id or "", initiated=record.created_at
    )
