"""The sweeper: `python -m media_service.sweeper [--loop] [--now ISO] [--metrics-port N]`.

One pass (or one every `SWEEP_INTERVAL_SECONDS` with `--loop`) applies the lifetime rules of
`media_service.retention` to the media due by now, found by a query on the sparse `sweep-due`
index (never a table scan), a page per shard at a time; then scans one page of the bucket for
objects no record accounts for and one page of incomplete multipart uploads, resuming where the
last pass stopped (cursors in the media table).

Safe to run as several copies and to kill at any point: every change is a conditional write on
the record first and storage second, so of two sweepers only one's write applies (the other
skips), and a kill between the two leaves only bytes no record accounts for, which the orphan
scan deletes later. `--now` (or `clock=`) drives the rules' clock in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, start_http_server

from media_service.access import (
    AccessPolicy,
    ConversationReaders,
    open_message_service_client,
)
from media_service.holds import Holds
from media_service.lifecycle_records import (
    MULTIPART_CURSOR_KEY,
    ORPHAN_CURSOR_KEY,
    SWEEP_SHARDS,
    LifecycleRecords,
)
from media_service.lifecycle_storage import (
    Deleted,
    LifecycleBucket,
    MultipartSession,
    ObjectVersion,
)
from media_service.metrics import LifecycleMetrics
from media_service.reclaim import QueueEvents, Reclaimer
from media_service.retention import Action, Policy, abandoned_at, decide, next_due
from media_service.settings import Settings
from shared import keys
from shared.aws import open_aws_clients
from shared.clock import iso, utcnow
from shared.errors import DependencyUnavailable
from shared.logging import configure_logging
from shared.media_records import MediaRecord, MediaRecords, StaleTransition
from shared.media_states import BYTES_VERIFIED, PENDING_CLIENT
from shared.models import MediaState

log = logging.getLogger("ferry.sweeper")

UPLOAD_EXPIRED = "the upload slot expired before its bytes (or proof) arrived"
# A multipart session younger than this may belong to a slot being created (the session is
# started before the record is written): never aborted.
YOUNG_SESSION = timedelta(minutes=10)
# At most this many rules applied to one record in one pass (each moves it forward).
MAX_STEPS = 4


@dataclass
class PassReport:
    examined: int = 0
    deleted: int = 0
    expired_originals: int = 0
    expired_derivatives: int = 0
    abandoned: int = 0
    orphans: int = 0
    aborted_uploads: int = 0
    reclaimed_bytes: int = 0
    held_refusals: int = 0
    skipped: int = 0


class Sweeper:
    def __init__(
        self,
        *,
        settings: Settings,
        records: MediaRecords,
        lifecycle: LifecycleRecords,
        storage: LifecycleBucket,
        reclaimer: Reclaimer,
        holds: Holds,
        access: AccessPolicy,
        metrics: LifecycleMetrics,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.records = records
        self.lifecycle = lifecycle
        self.storage = storage
        self.reclaimer = reclaimer
        self.holds = holds
        self.access = access
        self.metrics = metrics
        self.clock = clock
        self.policy = Policy.from_settings(
            settings, abandon_grace_seconds=settings.expiry_grace_seconds
        )

    async def run_pass(self) -> PassReport:
        now = self.clock()
        report = PassReport()
        for shard in range(SWEEP_SHARDS):
            start = None
            while True:
                page, start = await self.lifecycle.due(
                    f"s{shard}", now, self.settings.sweep_batch_size, start
                )
                for record in page:
                    report.examined += 1
                    await self._sweep(record, now, report)
                if start is None:
                    break
        await self._orphans(report)
        await self._multipart(now, report)
        self.metrics.passes.inc()
        log.info("sweep pass done", extra={"report": asdict(report), "now": iso(now)})
        return report

    # --- records ---------------------------------------------------------------------------

    async def _sweep(self, record: MediaRecord, now: datetime, report: PassReport) -> None:
        current: MediaRecord | None = record
        seen_referenced = False
        for _ in range(MAX_STEPS):
            if current is None:
                return
            action = decide(current, now, self.policy)
            if action is Action.NONE:
                break
            try:
                if action is Action.CHECK_UNSENT:
                    if await self.access.is_referenced(current.media_id):
                        seen_referenced = True
                        current = current.model_copy(update={"last_referenced_at": now})
                        continue
                    await self._delete(current, "unsent", report)
                    return
                elif action is Action.APPLY_HOLD:
                    await self.holds.apply_storage(current)
                    break
                else:
                    current = await self._apply(action, current, now, report)
            except StaleTransition:
                # Another sweeper (or the owner, an admin, the worker) changed it first.
                current = await self.records.get(record.media_id)
            except DependencyUnavailable:
                report.skipped += 1  # the Message Service did not answer: next pass
                return
        if current is None:
            return
        fields = {"last_referenced_at": iso(now)} if seen_referenced else None
        await self.lifecycle.schedule(
            current, next_due(current, now, self.policy), set_fields=fields
        )

    async def _apply(
        self, action: Action, record: MediaRecord, now: datetime, report: PassReport
    ) -> MediaRecord | None:
        if action is Action.SETTLE_ABANDONED:
            if record.upload_id:
                await self.storage.abort(
                    MultipartSession(record.object_key, record.upload_id, record.created_at)
                )
            report.abandoned += 1
            return await self.records.transition(
                record.media_id,
                MediaState.EXPIRED,
                set_fields={"error": {"code": "upload_expired", "message": UPLOAD_EXPIRED}},
                remove_fields=("pending_owner", "challenge"),
                only_from=frozenset({record.state}),
            )
        if action is Action.DELETE:
            await self._delete(record, "held_owner_delete", report)
            return None
        if action is Action.RETIRE_ORIGINAL:
            retired, deleted = await self.reclaimer.retire_original(record)
            report.expired_originals += 1
            self.metrics.expired.labels("original").inc()
            self._count(deleted, "retention", report)
            return retired
        if action is Action.RETIRE_DERIVATIVES:
            retired, deleted = await self.reclaimer.retire_derivatives(record)
            report.expired_derivatives += 1
            self.metrics.expired.labels("derivatives").inc()
            self._count(deleted, "retention", report)
            return retired
        raise AssertionError(f"unhandled action {action}")

    async def _delete(self, record: MediaRecord, reason: str, report: PassReport) -> None:
        """Delete the media (it is gone after this: nothing left to schedule)."""
        deleted = await self.reclaimer.delete_media(record)
        report.deleted += 1
        self.metrics.deleted.labels(reason).inc()
        self._count(deleted, "unsent" if reason == "unsent" else "owner", report)
        log.info("deleted media", extra={"media_id": record.media_id, "reason": reason})

    def _count(self, deleted: Deleted, reason: str, report: PassReport) -> None:
        report.reclaimed_bytes += deleted.bytes
        report.held_refusals += deleted.refused
        self.metrics.reclaimed.labels(reason).inc(deleted.bytes)
        self.metrics.hold_refusals.inc(deleted.refused)

    # --- the bucket ------------------------------------------------------------------------

    async def _orphans(self, report: PassReport) -> None:
        """One page of object versions from where the last pass stopped; delete the ones no
        record accounts for."""
        cursor = await self.lifecycle.cursor(ORPHAN_CURSOR_KEY)
        page, following = await self.storage.versions_page(
            "", cursor, limit=self.settings.sweep_batch_size * 10
        )
        orphans = [version for version in page if await self._orphan(version)]
        deleted = await self.storage.delete(orphans)
        report.orphans += deleted.objects
        self.metrics.orphans.inc(deleted.objects)
        self._count(deleted, "orphan", report)
        await self.lifecycle.save_cursor(ORPHAN_CURSOR_KEY, following or {})

    async def _orphan(self, version: ObjectVersion) -> bool:
        if version.delete_marker:
            return False  # the bucket's lifecycle removes lone delete markers
        media_id = keys.media_id_of_original(version.key)
        if media_id is not None:
            return not await self._original_accounted(media_id, version)
        blob_key = keys.blob_key_of_derivative(version.key)
        if blob_key is not None:
            blob = await self.records.get_blob(blob_key)
            if blob is not None and blob.refcount <= 0 and blob.retired_refs <= 0:
                # A deletion cut short after its counts reached zero: finish it.
                await self.reclaimer.release_blob(blob_key)
                return False
            return blob is None
        return False  # not ours to judge

    async def _original_accounted(self, media_id: str, version: ObjectVersion) -> bool:
        record = await self.records.get(media_id)
        if record is not None:
            if record.version_id is None and record.state in PENDING_CLIENT | BYTES_VERIFIED:
                return True  # the commit step has not read it yet
            if record.version_id == version.version_id and not record.original_retired:
                return True
        blob_key = record.blob_key if record is not None else None
        if blob_key is None:
            blob_key = await self.lifecycle.marker_blob(version.key)
        if blob_key is None:
            return False
        blob = await self.records.get_blob(blob_key)
        return (
            blob is not None
            and blob.object_key == version.key
            and blob.version_id == version.version_id
        )

    async def _multipart(self, now: datetime, report: PassReport) -> None:
        cursor = await self.lifecycle.cursor(MULTIPART_CURSOR_KEY)
        page, following = await self.storage.multipart_page(
            keys.ORIGINALS_PREFIX, cursor, limit=self.settings.sweep_batch_size
        )
        for session in page:
            if utcnow() - session.initiated < YOUNG_SESSION:
                continue
            media_id = keys.media_id_of_original(session.key)
            record = await self.records.get(media_id) if media_id else None
            if record is not None and record.upload_id == session.upload_id:
                abandoned = abandoned_at(record, self.policy)
                still_open = record.state is MediaState.AWAITING_UPLOAD
                if still_open and (abandoned is None or now <= abandoned):
                    continue
            await self.storage.abort(session)
            report.aborted_uploads += 1
            self.metrics.aborted.inc()
        await self.lifecycle.save_cursor(MULTIPART_CURSOR_KEY, following or {})


@asynccontextmanager
async def open_sweeper(
    settings: Settings, metrics: LifecycleMetrics, clock: Callable[[], datetime]
) -> AsyncIterator[Sweeper]:
    async with AsyncExitStack() as stack:
        aws = await open_aws_clients(stack, settings, "s3", "dynamodb", "sqs")
        resources = settings.resources
        client = await open_message_service_client(stack, settings)
        readers = None if client is None else ConversationReaders(client)
        queue = await aws.sqs.get_queue_url(QueueName=resources.media_events_queue)
        records = MediaRecords(
            aws.dynamodb,
            media_table=resources.media_table,
            blobs_table=resources.blobs_table,
            usage_table=resources.usage_table,
        )
        lifecycle = LifecycleRecords(records)
        storage = LifecycleBucket(aws.s3, resources.bucket)
        yield Sweeper(
            settings=settings,
            records=records,
            lifecycle=lifecycle,
            storage=storage,
            reclaimer=Reclaimer(
                records=records,
                lifecycle=lifecycle,
                storage=storage,
                events=QueueEvents(aws.sqs, queue["QueueUrl"]),
            ),
            holds=Holds(lifecycle=lifecycle, storage=storage),
            access=AccessPolicy(readers),
            metrics=metrics,
            clock=clock,
        )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m media_service.sweeper", description=__doc__)
    parser.add_argument("--loop", action="store_true", help="a pass every SWEEP_INTERVAL_SECONDS")
    parser.add_argument(
        "--now",
        type=datetime.fromisoformat,
        help="the rules' clock (ISO 8601 with offset), for tests and dry rehearsals",
    )
    parser.add_argument("--metrics-port", type=int, help="serve /metrics on this port (--loop)")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    registry = CollectorRegistry()
    metrics = LifecycleMetrics(registry)
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr=settings.bind_host, registry=registry)
    fixed: datetime | None = args.now
    clock = (lambda: fixed) if fixed is not None else utcnow
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        # A stop ends the loop after the pass in progress (a kill mid-pass is safe too).
        loop.add_signal_handler(stop_signal, stopping.set)
    async with open_sweeper(settings, metrics, clock) as sweeper:
        while True:
            report = await sweeper.run_pass()
            # The last line of a one-shot run is its report, for scripts and tests.
            print(json.dumps({"sweep": asdict(report)}), flush=True)
            if not args.loop:
                return 0
            try:
                await asyncio.wait_for(stopping.wait(), settings.sweep_interval_seconds)
            except TimeoutError:
                continue
            return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.now is not None and args.now.tzinfo is None:
        print("--now needs a UTC offset (e.g. 2030-01-01T00:00:00+00:00)", file=sys.stderr)
        return 2
    settings = Settings()
    configure_logging("sweeper", settings.log_level, json_lines=settings.log_json)
    try:
        return asyncio.run(_run(args, settings))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
