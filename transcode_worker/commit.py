"""The commit step: verify an original that arrived, then move its media on.

For each new original `o/{media_id}`:
1. no media record: an orphan (uploaded after an abandon); counted and its bytes deleted;
2. `awaiting_upload`: bytes that landed after the slot expired (plus a grace) expire the media
   and are deleted; otherwise stream the object once, check length, SHA-256 and real type
   against the slot; a mismatch fails the media and deletes that exact object version; a match
   moves the media to `uploaded`, pinned to the version read, and registers the blob, in one
   transaction;
3. past `awaiting_upload`, any version of the key other than the pinned one is a stray (one
   upload URL can store many objects): deleted, never verified nor served
   (`transcode_worker.stray_versions`);
4. `uploaded` (right after 2, or on a redelivery after a crash between 2 and 3): run the
   processor, record its outcome on the blob, then on the media;
5. anything else: a repeated event or a redelivery; nothing to do.

Every write is conditional on the state it starts from, so two workers racing on the same media
(S3 may send two events for one upload; SQS redelivers) cannot both apply one: the loser gets
`StaleTransition` and stops, the winner publishes the one event of that change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import Token
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from shared.aws import error_code
from shared.clock import utcnow
from shared.keys import original_key
from shared.logging import request_id_var
from shared.media_records import MediaRecord, MediaRecords, StaleTransition
from shared.models import MediaState
from shared.moderation import moderation_fields
from transcode_worker.events import CreatedObject
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.pipeline import Processed, Processor, record_ids
from transcode_worker.publisher import Publisher
from transcode_worker.spool import OriginalSpool, SpoolFile
from transcode_worker.stray_versions import StrayVersions
from transcode_worker.verify import StreamVerifier, Verified, mismatch

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import DeleteObjectRequestTypeDef, GetObjectRequestTypeDef

log = logging.getLogger("ferry.worker.commit")

Outcome = Literal["ok", "duplicate", "orphan", "ignored"]

PROCESSING_FAILED = "processing_failed"
PROCESSING_FAILED_MESSAGE = "the media could not be processed; upload it again"
UPLOAD_EXPIRED_MESSAGE = "the bytes arrived after the upload slot expired"

# S3's answers for an object (or version) that is not there (any more).
_GONE = frozenset({"NoSuchKey", "NoSuchVersion", "404"})
# States whose change this worker announces; on a redelivery it announces them again, since
# the attempt that made the change may have died before publishing.
_ANNOUNCED_BY_WORKER = frozenset({MediaState.READY, MediaState.FAILED})


# Hands a verified media to a derivation lane; False when its type has none (processed here).
Handoff = Callable[[MediaRecord, CreatedObject], Awaitable[bool]]


class ObjectMissing(Exception):
    """An event announced an original that storage does not have."""


class CommitStep:
    def __init__(
        self,
        *,
        s3: S3Client,
        bucket: str,
        store: MediaRecords,
        publisher: Publisher,
        processor: Processor,
        metrics: WorkerMetrics,
        read_chunk_bytes: int,
        expiry_grace: timedelta = timedelta(minutes=10),
        handoff: Handoff | None = None,
        spool: OriginalSpool | None = None,
    ) -> None:
        self._s3 = s3
        # Originals kept on disk for the derivation lanes (`transcode_worker.spool`).
        self._spool = spool
        # With a handoff, verification is a fast lane: derivation runs off another queue.
        self._handoff = handoff
        self._bucket = bucket
        self._store = store
        self._publisher = publisher
        self._processor = processor
        self._metrics = metrics
        self._read_chunk_bytes = read_chunk_bytes
        self._expiry_grace = expiry_grace
        self._strays = StrayVersions(
            s3=s3, bucket=bucket, store=store, metrics=metrics, read_chunk_bytes=read_chunk_bytes
        )
        # media id → (its lock, how many jobs hold or wait for it); entries go with the last.
        self._media_locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def run(self, created: CreatedObject, *, redelivered: bool = False) -> Outcome:
        """Take one announced original as far as it can go now."""
        if created.bucket is not None and created.bucket != self._bucket:
            log.warning(
                "event for another bucket ignored",
                extra={"bucket": created.bucket, "media_id": created.media_id},
            )
            return "ignored"
        received = time.perf_counter()
        async with self._one_job_per_media(created.media_id):
            return await self._run(created, redelivered=redelivered, received=received)

    @asynccontextmanager
    async def _one_job_per_media(self, media_id: str) -> AsyncIterator[None]:
        """S3 announces a multipart upload twice: the second job waits for the first and then
        finds nothing to do, instead of streaming the same object again beside it."""
        lock, waiting = self._media_locks.get(media_id, (asyncio.Lock(), 0))
        self._media_locks[media_id] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._media_locks[media_id]
            if waiting <= 1:
                del self._media_locks[media_id]
            else:
                self._media_locks[media_id] = (lock, waiting - 1)

    async def _run(self, created: CreatedObject, *, redelivered: bool, received: float) -> Outcome:
        record = await self._store.get(created.media_id)
        if record is None:
            # An abandoned slot's URL still stores bytes: they must not linger (nor dodge the
            # pending-uploads cap), so they go now (a blob's version never does).
            log.warning("orphaned object: no media record", extra={"media_id": created.media_id})
            self._metrics.orphaned_objects.inc()
            await self._strays.discard(
                original_key(created.media_id),
                announced=created.version_id,
                keep=None,
                reason="abandoned",
            )
            return "orphan"
        token: Token[str | None] | None = None
        if record.request_id:
            # Log lines of this job carry the id of the request that opened the slot.
            token = request_id_var.set(record.request_id)
        try:
            return await self._advance(record, created, redelivered=redelivered, received=received)
        finally:
            if token is not None:
                request_id_var.reset(token)

    async def derive(self, created: CreatedObject, *, redelivered: bool = False) -> Outcome:
        """A derivation lane's job: process a verified media (uploaded, or processing after a
        crash) and settle it; anything else is a repeat."""
        async with self._one_job_per_media(created.media_id):
            record = await self._store.get(created.media_id)
            if record is None:
                return "orphan"
            # Log lines of this job carry the id of the request that opened the slot.
            token = request_id_var.set(record.request_id) if record.request_id else None
            try:
                if record.state in (MediaState.UPLOADED, MediaState.PROCESSING):
                    return await self._process(record, created)
                if redelivered and record.state in _ANNOUNCED_BY_WORKER:
                    await self._publisher.publish(record)
                return "duplicate"
            finally:
                if token is not None:
                    request_id_var.reset(token)

    async def give_up(self, media_id: str) -> None:
        """The last attempt failed: fail the media from whatever live state it is in, so it
        never stays stuck (its message goes on to the dead-letter queue)."""
        try:
            failed = await self._store.fail(media_id, PROCESSING_FAILED, PROCESSING_FAILED_MESSAGE)
        except StaleTransition:
            return  # gone, or already settled
        token = request_id_var.set(failed.request_id) if failed.request_id else None
        try:
            log.error("media failed after its last attempt", extra=record_ids(failed))
            await self._publisher.publish(failed)
        finally:
            if token is not None:
                request_id_var.reset(token)

    # --- the steps ------------------------------------------------------------------------

    async def _advance(
        self, record: MediaRecord, created: CreatedObject, *, redelivered: bool, received: float
    ) -> Outcome:
        key = original_key(created.media_id)
        if record.state is MediaState.AWAITING_UPLOAD:
            if record.object_key != key:
                log.warning("record does not expect its bytes here", extra=record_ids(record))
                return "ignored"
            if self._landed_too_late(record, created):
                return await self._expire(record, created)
            committed = await self._verify_and_commit(record, created, received)
            if not isinstance(committed, MediaRecord):
                return committed
            record = committed
        else:
            # The slot is settled: only its pinned version (if any) may stay.
            pinned = record.version_id if record.object_key == key else None
            # Committed without a version (an unversioned bucket): no stray can be told apart.
            unversioned = record.blob_ref and pinned is None and record.object_key == key
            if not unversioned:
                await self._strays.discard(
                    key, announced=created.version_id, keep=pinned, reason="extra_version"
                )
                if created.version_id is not None and created.version_id != pinned:
                    return "duplicate"  # another version's event: nothing else to do for it
        # A redelivered message whose media is still `processing` is a job that died mid-way
        # (crash, broken pool, shutdown): resume it. A fresh duplicate event is another job's.
        if self._handoff is not None:
            # `processing` was set by a derivation lane's job: that lane's queue owns it.
            if record.state is MediaState.UPLOADED and await self._handoff(record, created):
                return "ok"
            if record.state is MediaState.PROCESSING:
                return "duplicate"
        if record.state is MediaState.UPLOADED or (
            record.state is MediaState.PROCESSING and redelivered
        ):
            return await self._process(record, created)
        if redelivered and record.state in _ANNOUNCED_BY_WORKER:
            await self._publisher.publish(record)
        return "duplicate"

    async def _verify_and_commit(
        self, record: MediaRecord, created: CreatedObject, received: float
    ) -> MediaRecord | Outcome:
        """The record, now uploaded; or the outcome when the media goes no further here.
        `received`: when this job started (`time.perf_counter()`)."""
        # Where the time to `uploaded` goes, on the log line (the sender waits for it).
        started = time.perf_counter()
        spooled = None
        if self._spool is not None and self._spool.wants(record.size):
            spooled = await asyncio.to_thread(self._spool.open, record.media_id)
        try:
            return await self._check_and_commit(record, created, received, started, spooled)
        finally:
            if spooled is not None and self._spool is not None:
                # Unless kept (committed with these bytes): a mismatch, a lost race, an error.
                await asyncio.to_thread(self._spool.discard, spooled)

    async def _check_and_commit(
        self,
        record: MediaRecord,
        created: CreatedObject,
        received: float,
        started: float,
        spooled: SpoolFile | None,
    ) -> MediaRecord | Outcome:
        waited = processing_latency(created.created_at, utcnow())
        if waited is not None:
            waited = round(max(0.0, waited - (started - received)), 4)
        verified, read_version = await self._stream(record, created.version_id, spooled)
        streamed = time.perf_counter()
        problem = mismatch(record, verified)
        if problem is not None:
            code, message = problem
            return "ok" if await self._reject(record, code, message, read_version) else "duplicate"
        try:
            committed = await self._store.commit_upload(record, version_id=read_version)
        except StaleTransition:
            # Another worker committed (or settled) it first, maybe with another version:
            # this one is then a stray.
            current = await self._store.get(record.media_id)
            settled = current is None or current.state is not MediaState.AWAITING_UPLOAD
            if (
                read_version is not None
                and settled
                and (current is None or current.version_id != read_version)
            ):
                await self._strays.discard(
                    record.object_key,
                    announced=read_version,
                    keep=None if current is None else current.version_id,
                    reason="extra_version",
                )
            return "duplicate"
        self._metrics.uploads_verified.labels(record.media_type.value, "ok").inc()
        self._metrics.upload_bytes.labels(record.media_type.value).observe(verified.length)
        self._metrics.stored_bytes.labels("original").inc(verified.length)
        if spooled is not None and self._spool is not None:
            # Before the hand-off: the lane's job finds the file from its first moment.
            await asyncio.to_thread(self._spool.keep, spooled, verified.sha256)
        log.info(
            "upload verified",
            extra={
                **record_ids(record),
                "size": verified.length,
                "version_id": read_version,
                # From the S3 event to this job's start (SQS, a free slot), the record read,
                # the streamed read and hash, the commit transaction.
                "waited_seconds": waited,
                "record_seconds": round(started - received, 4),
                "read_seconds": round(streamed - started, 4),
                "commit_seconds": round(time.perf_counter() - streamed, 4),
            },
        )
        await self._publisher.publish(committed)
        return committed

    def _landed_too_late(self, record: MediaRecord, created: CreatedObject) -> bool:
        """Storage refuses an expired URL, but an upload started just before expiry may land
        after it (hence the grace); what lands later still is refused here."""
        if record.upload_expires_at is None:
            return False
        landed = created.created_at or utcnow()
        return landed > record.upload_expires_at + self._expiry_grace

    async def _expire(self, record: MediaRecord, created: CreatedObject) -> Outcome:
        # A StaleTransition: settled meanwhile (the Media Service expires slots as it reads them).
        with contextlib.suppress(StaleTransition):
            await self._store.transition(
                record.media_id,
                MediaState.EXPIRED,
                set_fields={"error": {"code": "upload_expired", "message": UPLOAD_EXPIRED_MESSAGE}},
                remove_fields=("pending_owner", "challenge"),
                only_from=frozenset({MediaState.AWAITING_UPLOAD}),
            )
        log.warning("bytes landed after the slot expired", extra=record_ids(record))
        await self._strays.discard(
            record.object_key, announced=created.version_id, keep=None, reason="expired"
        )
        return "orphan"

    async def _stream(
        self, record: MediaRecord, version_id: str | None, spooled: SpoolFile | None = None
    ) -> tuple[Verified, str | None]:
        """Read the object once, in chunks, and the version read (each chunk also written to
        `spooled`, when given).

        The version is pinned: it is the one the blob will point at, or the one deleted.
        """
        request: GetObjectRequestTypeDef = {"Bucket": self._bucket, "Key": record.object_key}
        if version_id is not None:
            request["VersionId"] = version_id
        try:
            response = await self._s3.get_object(**request)
        except ClientError as error:
            if error_code(error) in _GONE:
                # Announced but not there: retried (a lagging store catches up), and failed
                # after the last try rather than left waiting for bytes forever.
                raise ObjectMissing(f"{record.object_key} is not in the bucket") from error
            raise
        verifier = StreamVerifier()
        complete = True

        def feed(chunk: bytes) -> None:
            verifier.feed(chunk)
            if spooled is not None:
                spooled.write(chunk)

        body = response["Body"]
        # Leaving the block releases the connection (or closes it when we stopped early).
        async with body:
            while chunk := await body.read(self._read_chunk_bytes):
                # Off the loop: hashing gigabytes is seconds of CPU (hashlib frees the GIL).
                await asyncio.to_thread(feed, chunk)
                if verifier.length > record.size:
                    # Already too long: reading the rest would prove nothing more.
                    complete = False
                    break
        read_version = response.get("VersionId")
        return verifier.result(complete=complete), read_version

    async def _reject(
        self, record: MediaRecord, code: str, message: str, version_id: str | None
    ) -> bool:
        """Fail the media and drop the bytes; False when another worker settled it first."""
        try:
            # Only from awaiting_upload (not every live state): if another worker committed a
            # different, good version meanwhile, these bad bytes must not fail that media.
            failed: MediaRecord | None = await self._store.fail(
                record.media_id,
                code,
                message,
                only_from=frozenset({MediaState.AWAITING_UPLOAD}),
            )
        except StaleTransition:
            failed = None
        if failed is not None:
            self._metrics.uploads_verified.labels(record.media_type.value, code).inc()
            log.warning("upload rejected: %s", message, extra={**record_ids(record), "code": code})
        # A known version is exactly the bytes judged, never the committed ones. Without a
        # version (unversioned bucket) the key is deleted only if this worker failed the media.
        if version_id is not None or failed is not None:
            await self._discard(record, version_id)
        if failed is None:
            return False
        await self._publisher.publish(failed)
        return True

    async def _discard(self, record: MediaRecord, version_id: str | None) -> None:
        """Delete rejected bytes; best effort (the lifecycle rules are the backstop)."""
        request: DeleteObjectRequestTypeDef = {"Bucket": self._bucket, "Key": record.object_key}
        if version_id is not None:
            request["VersionId"] = version_id
        try:
            await self._s3.delete_object(**request)
        except Exception:
            log.warning(
                "could not delete rejected bytes",
                exc_info=True,
                extra={**record_ids(record), "version_id": version_id},
            )

    async def _process(self, record: MediaRecord, created: CreatedObject) -> Outcome:
        processed: Processed = await self._processor.process(record)
        # The blob first: once the media is ready, a dedup hit on its bytes must find an outcome.
        await self._store.settle_blob(
            record.blob_key,
            processed.state,
            processed.meta,
            processed.variants,
            error=processed.error,
            nsfw_score=processed.nsfw_score,
        )
        fields: dict[str, Any] = {
            "meta": processed.meta,
            "variants": [
                variant.model_dump(mode="json", exclude_none=True) for variant in processed.variants
            ],
        }
        if processed.error is not None:
            fields["error"] = processed.error.model_dump(mode="json")
        fields.update(
            moderation_fields(
                processed.state, processed.error, processed.meta, processed.nsfw_score, utcnow()
            )
        )
        try:
            settled = await self._store.transition(
                record.media_id,
                processed.state,
                set_fields=fields,
                # PROCESSING too: a processor that marks its start can be resumed after a crash.
                only_from=frozenset({MediaState.UPLOADED, MediaState.PROCESSING}),
            )
        except StaleTransition:
            return "duplicate"
        latency = processing_latency(created.created_at, settled.updated_at)
        if settled.state is MediaState.READY and latency is not None:
            self._metrics.processing_latency.labels(record.media_type.value).observe(latency)
        log.info(
            "media settled",
            extra={**record_ids(record), "state": settled.state.value, "latency_seconds": latency},
        )
        await self._publisher.publish(settled)
        return "ok"


def processing_latency(created_at: datetime | None, settled_at: datetime) -> float | None:
    """Seconds from the original's creation in storage to the media settling; None when the
    event did not say when. Clocks differ between storage and us: never below zero."""
    if created_at is None:
        return None
    return max(0.0, (settled_at - created_at).total_seconds())
