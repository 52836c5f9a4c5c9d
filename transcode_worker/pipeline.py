"""The derivatives pipeline, the step between "uploaded" and "ready".

The commit step calls a `Processor` on every verified original and records what it returns,
first on the blob (so a later dedup hit copies it) and then on the media. The worker runs
`DerivingProcessor`: original → temporary file → derivatives (`transcode_worker.derivatives`,
in a process pool) → storage; `NoProcessing` (ready once verified) serves the commit step's own
tests. A processor must be idempotent: a redelivered message runs it again on the same bytes,
so its derivatives go to content-addressed keys (`shared.keys.derivative_object_key`).

Memory stays bounded: the original streams to a temporary file in chunks, decoders run in pool
processes on that file, and each derivative is uploaded from disk. The temporary folder is
removed whatever happens. Derivative keys are content-addressed (`d/{family}/{sha256}/...`), so
a rerun after a crash overwrites identical objects, and deduplicated media share them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shared.keys import derivative_object_key
from shared.media_records import MediaRecord, MediaRecords, StaleTransition, StoredVariant
from shared.models import ErrorDetail, MediaState, MediaType
from transcode_worker.derivatives.moderation import BLOCK_MESSAGES
from transcode_worker.derivatives.types import (
    Derived,
    DerivedFile,
    DeriveError,
    FileChecked,
    ScanFailed,
    read_progress,
)
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.pool import DerivePool
from transcode_worker.publisher import Publisher
from transcode_worker.spool import OriginalSpool

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

log = logging.getLogger("ferry.worker.derive")

# Derivatives never change under their key: caches may keep them for a year.
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True, kw_only=True)
class Processed:
    """What processing concluded about some verified bytes."""

    meta: dict[str, Any]
    variants: list[StoredVariant] = field(default_factory=list)
    # READY normally; a processor may conclude BLOCKED (moderation) or FAILED (undecodable).
    state: MediaState = MediaState.READY
    # Why, when `state` is FAILED or BLOCKED (shown to users in the media document).
    error: ErrorDetail | None = None
    # The NSFW classifier's score (admins only), when it ran.
    nsfw_score: float | None = None


class Processor(Protocol):
    async def process(self, record: MediaRecord) -> Processed:
        """Derive what the media needs from its verified original (`record.object_key`,
        `record.version_id`). Raising means "retry later"; the consumer backs off."""
        ...


class NoProcessing:
    """No derivatives: the media is ready as soon as its bytes are verified."""

    async def process(self, record: MediaRecord) -> Processed:
        return Processed(meta={"mime": record.content_type})


def record_ids(record: MediaRecord) -> dict[str, str]:
    """A media's ids, for the `extra` of a log line about it."""
    return {"media_id": record.media_id, "media_type": record.media_type.value}


# A derivation: (source, out_dir) → Derived, run in a pool process. Bound with its limits.
DeriveFunction = Callable[[Path, Path], Derived]

# How long a fault-injected derivation runs before it kills its process (jobs beside it are
# then in flight when the pool breaks, as with a real decoder crash).
CRASH_AFTER_SECONDS = 1.0


class JobCrashed(Exception):
    """A derivation killed the process it ran in, alone: the job itself is the cause."""


def crash_pool_process(source: Path, out_dir: Path) -> Derived:
    """Fault injection (`FAULT_CRASH_SHA256`): die the way a segfaulting decoder does."""
    time.sleep(CRASH_AFTER_SECONDS)
    os._exit(70)


# A check of the original before its derivation (the documents' malware scan); raises
# ScanFailed when it cannot judge (the job is retried).
FileCheck = Callable[[Path], Awaitable[FileChecked]]


@dataclass(frozen=True)
class DerivePlans:
    """Which derivation each media type gets (none: the commit step's checks only)."""

    by_type: dict[MediaType, DeriveFunction]
    checks: dict[MediaType, FileCheck] = field(default_factory=dict)

    def for_type(self, media_type: MediaType) -> DeriveFunction | None:
        return self.by_type.get(media_type)


def blocked(meta: dict[str, Any], reason: str, nsfw_score: float | None = None) -> Processed:
    """A moderation verdict: `blocked`, error code = the reason, nothing but the mime shown."""
    return Processed(
        meta={key: value for key, value in meta.items() if key == "mime"},
        state=MediaState.BLOCKED,
        error=ErrorDetail(code=reason, message=BLOCK_MESSAGES.get(reason, "blocked by moderation")),
        nsfw_score=nsfw_score,
    )


class DerivingProcessor:
    def __init__(
        self,
        *,
        s3: S3Client,
        bucket: str,
        store: MediaRecords,
        publisher: Publisher,
        pool: DerivePool,
        plans: DerivePlans,
        metrics: WorkerMetrics,
        read_chunk_bytes: int,
        work_dir: str | None = None,
        upload_concurrency: int = 4,
        progress_poll_seconds: float = 2.0,
        crash_on: frozenset[str] = frozenset(),
        spool: OriginalSpool | None = None,
    ) -> None:
        # Originals the commit step kept on disk: taken instead of downloaded when there.
        self._spool = spool
        # SHA-256s whose derivation kills its pool process (fault-injection tests only).
        self._crash_on = crash_on
        self._s3 = s3
        self._bucket = bucket
        self._store = store
        self._publisher = publisher
        self._pool = pool
        self._plans = plans
        self._metrics = metrics
        self._read_chunk_bytes = read_chunk_bytes
        self._work_dir = work_dir
        self._upload_concurrency = upload_concurrency
        self._progress_poll_seconds = progress_poll_seconds

    async def process(self, record: MediaRecord) -> Processed:
        derive = self._plans.for_type(record.media_type)
        if derive is None:
            return Processed(meta={"mime": record.content_type})
        record = await self._mark_processing(record)
        started = time.perf_counter()
        work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="ferry-", dir=self._work_dir))
        try:
            source, out_dir = work / "original", work / "out"
            await asyncio.to_thread(out_dir.mkdir)
            await self._download(record, source)
            try:
                checked = await self._check(record, source)
                if checked.blocked_reason is not None:
                    return self._blocked(record, checked.meta, checked.blocked_reason, None)
                derived = await self._derive(record, derive, source, out_dir)
            except ScanFailed as error:
                # Not a verdict: the job is retried, nothing is published meanwhile.
                self._metrics.moderation.labels("error").inc()
                log.warning("moderation scan failed: %s", error, extra=record_ids(record))
                raise
            except DeriveError as error:
                self._metrics.derivations.labels(record.media_type.value, error.code).inc()
                log.warning(
                    "media cannot be processed: %s",
                    error.message,
                    extra={**record_ids(record), "code": error.code},
                )
                return Processed(
                    meta={"mime": record.content_type},
                    state=MediaState.FAILED,
                    error=ErrorDetail(code=error.code, message=error.message),
                )
            if derived.scanned:
                verdict = "ok" if derived.blocked_reason is None else "blocked"
                self._metrics.moderation.labels(verdict).inc()
            if derived.blocked_reason is not None:
                return self._blocked(
                    record, derived.meta, derived.blocked_reason, derived.nsfw_score
                )
            await self._upload(record.blob_key, derived.files)
            self._metrics.derivations.labels(record.media_type.value, "ok").inc()
            self._metrics.derive_seconds.labels(record.media_type.value).observe(
                time.perf_counter() - started
            )
            return Processed(
                meta={"mime": record.content_type, **checked.meta, **derived.meta},
                nsfw_score=derived.nsfw_score,
                variants=[
                    StoredVariant(
                        name=variant.name,
                        content_type=variant.content_type,
                        size=variant.size,
                        width=variant.width,
                        height=variant.height,
                        sha256=variant.sha256,
                        key=derivative_object_key(record.blob_key, variant.key),
                    )
                    for variant in derived.variants
                ],
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    async def _derive(
        self, record: MediaRecord, derive: DeriveFunction, source: Path, out_dir: Path
    ) -> Derived:
        """Run the derivation in the shared pool; if the pool breaks under it, again alone.

        A broken pool fails every job in flight, the culprit's and its bystanders'. Alone, a
        bystander finishes and the culprit breaks its own process: `JobCrashed`. A media whose
        earlier runs died unfinished (`derive_runs` > 1) runs alone from the start, so a
        repeat offender never takes others down with it.
        """
        if record.sha256 in self._crash_on:
            derive = crash_pool_process
        job = functools.partial(derive, source, out_dir)
        if record.derive_runs > 1:
            return await self._isolated(record, job, out_dir)
        try:
            return await self._follow(record, await self._pool.run(job), out_dir)
        except BrokenProcessPool:
            log.warning("the pool broke under this job; running it alone", extra=record_ids(record))
            return await self._isolated(record, job, out_dir)

    async def _isolated(
        self, record: MediaRecord, job: Callable[[], Derived], out_dir: Path
    ) -> Derived:
        await asyncio.to_thread(shutil.rmtree, out_dir, True)  # what the broken run left
        await asyncio.to_thread(out_dir.mkdir)
        isolated = self._metrics.isolated_runs
        run = asyncio.ensure_future(self._pool.run_isolated(job))
        try:
            derived = await self._follow(record, run, out_dir)
        except BrokenProcessPool as error:
            isolated.labels(record.media_type.value, "crashed").inc()
            raise JobCrashed(f"the derivation of {record.media_id} killed its process") from error
        finally:
            run.cancel()
        isolated.labels(record.media_type.value, "ok").inc()
        return derived

    async def _check(self, record: MediaRecord, source: Path) -> FileChecked:
        check = self._plans.checks.get(record.media_type)
        return FileChecked() if check is None else await check(source)

    def _blocked(
        self, record: MediaRecord, meta: dict[str, Any], reason: str, score: float | None
    ) -> Processed:
        self._metrics.derivations.labels(record.media_type.value, "blocked").inc()
        log.warning("media blocked by moderation: %s", reason, extra=record_ids(record))
        return blocked({"mime": record.content_type, **meta}, reason, score)

    async def _follow(
        self, record: MediaRecord, job: asyncio.Future[Derived], out_dir: Path
    ) -> Derived:
        """Wait for a pool job, showing its progress on the media document meanwhile."""
        shown: int | None = None
        while True:
            done, _ = await asyncio.wait({job}, timeout=self._progress_poll_seconds)
            if done:
                return job.result()
            percent = await asyncio.to_thread(read_progress, out_dir)
            if percent is not None and percent != shown:
                await self._store.set_progress(record.media_id, percent)
                shown = percent

    async def _mark_processing(self, record: MediaRecord) -> MediaRecord:
        """uploaded → processing, announced; a redelivery finds it processing already."""
        if record.state is MediaState.PROCESSING:
            return record
        try:
            marked = await self._store.transition(
                record.media_id,
                MediaState.PROCESSING,
                only_from=frozenset({MediaState.UPLOADED}),
            )
        except StaleTransition:
            current = await self._store.get(record.media_id)
            return current or record
        log.info("media processing", extra=record_ids(record))
        await self._publisher.publish(marked)
        return marked

    async def _download(self, record: MediaRecord, target: Path) -> None:
        """The verified version: the commit step's spooled copy when this host has it, else
        streamed from storage to disk chunk by chunk."""
        if self._spool is not None and await asyncio.to_thread(
            self._spool.take, record.media_id, record.sha256, record.size, target
        ):
            self._metrics.derive_originals.labels("spool").inc()
            return
        self._metrics.derive_originals.labels("storage").inc()
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": record.object_key}
        if record.version_id:
            request["VersionId"] = record.version_id
        response = await self._s3.get_object(**request)
        handle = await asyncio.to_thread(target.open, "wb")
        body = response["Body"]
        try:
            # `async with body` (not `as`): entering yields the raw HTTP response, not the stream.
            async with body:
                while chunk := await body.read(self._read_chunk_bytes):
                    await asyncio.to_thread(handle.write, chunk)
        finally:
            await asyncio.to_thread(handle.close)

    async def _upload(self, blob_key: str, files: list[DerivedFile]) -> None:
        slots = asyncio.Semaphore(self._upload_concurrency)

        async def put(file: DerivedFile) -> None:
            async with slots:
                data = await asyncio.to_thread(file.path.read_bytes)
                await self._s3.put_object(
                    Bucket=self._bucket,
                    Key=derivative_object_key(blob_key, file.key),
                    Body=data,
                    ContentType=file.content_type,
                    CacheControl=IMMUTABLE,
                )
                self._metrics.stored_bytes.labels("derivative").inc(len(data))

        # A TaskGroup: if one upload fails the others stop before the work folder goes.
        async with asyncio.TaskGroup() as uploads:
            for file in files:
                uploads.create_task(put(file))
