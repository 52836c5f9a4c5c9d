"""The commit step's decisions, against in-memory stand-ins for S3 and the media records
(`tests.fakes`)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry

from shared.keys import new_media_id, original_key
from shared.media_records import MediaRecord, StaleTransition
from shared.models import MediaState, MediaType
from tests.fakes import FakeMediaRecords
from transcode_worker.commit import (
    PROCESSING_FAILED,
    CommitStep,
    ObjectMissing,
    processing_latency,
)
from transcode_worker.events import CreatedObject
from transcode_worker.metrics import WorkerMetrics
from transcode_worker.pipeline import NoProcessing

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

BUCKET = "ferry-media"
CHUNK = 1024
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 20


class FakeBody:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0
        self.reads = 0

    async def __aenter__(self) -> FakeBody:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def read(self, amount: int) -> bytes:
        self.reads += 1
        chunk = self.data[self.offset : self.offset + amount]
        self.offset += len(chunk)
        return chunk


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}  # (key, version) → bytes
        self.latest: dict[str, str] = {}
        self.gets: list[dict[str, Any]] = []
        self.deletes: list[dict[str, Any]] = []
        self.bodies: list[FakeBody] = []
        self.versioned = True

    @property
    def client(self) -> S3Client:
        """This fake where code takes the real client. A cast: the fake has only the calls the
        commit step makes, not the whole client the stubs describe."""
        return cast("S3Client", self)

    def put(self, key: str, data: bytes) -> str:
        version = f"v{len(self.objects) + 1}"
        self.objects[(key, version)] = data
        self.latest[key] = version
        return version

    async def get_object(self, **request: Any) -> dict[str, Any]:
        self.gets.append(request)
        key = request["Key"]
        version = request.get("VersionId") or self.latest.get(key)
        if version is None or (key, version) not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
        body = FakeBody(self.objects[(key, version)])
        self.bodies.append(body)
        response: dict[str, Any] = {"Body": body}
        if self.versioned:
            response["VersionId"] = version
        return response

    async def delete_object(self, **request: Any) -> None:
        self.deletes.append(request)
        self.objects.pop((request["Key"], request.get("VersionId", "")), None)

    async def head_object(self, **request: Any) -> dict[str, Any]:
        data = self.objects[(request["Key"], request["VersionId"])]
        return {"ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode()}

    def get_paginator(self, name: str) -> FakeVersionPages:
        assert name == "list_object_versions"
        return FakeVersionPages(self)

    def versions_of(self, key: str) -> list[str]:
        return [version for (stored, version) in self.objects if stored == key]


class FakeVersionPages:
    def __init__(self, s3: FakeS3) -> None:
        self.s3 = s3

    async def paginate(self, *, Bucket: str, Prefix: str) -> AsyncIterator[dict[str, Any]]:  # noqa: N803 - boto's names
        yield {
            "Versions": [
                {"Key": key, "VersionId": version}
                for (key, version) in self.s3.objects
                if key.startswith(Prefix)
            ]
        }


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[MediaRecord] = []

    async def publish(self, record: MediaRecord) -> None:
        self.published.append(record)

    @property
    def states(self) -> list[str]:
        return [record.state.value for record in self.published]


class World:
    def __init__(self) -> None:
        self.s3 = FakeS3()
        self.store = FakeMediaRecords()
        self.publisher = RecordingPublisher()
        self.registry = CollectorRegistry()
        self.step = CommitStep(
            s3=self.s3.client,
            bucket=BUCKET,
            store=self.store,  # type: ignore[arg-type]
            publisher=self.publisher,
            processor=NoProcessing(),
            metrics=WorkerMetrics(self.registry),
            read_chunk_bytes=CHUNK,
        )

    def slot(
        self,
        data: bytes,
        *,
        content_type: str = "image/jpeg",
        size: int | None = None,
        state: MediaState = MediaState.AWAITING_UPLOAD,
    ) -> MediaRecord:
        now = datetime.now(UTC)
        media_id = new_media_id()
        record = MediaRecord(
            media_id=media_id,
            owner="alice",
            state=state,
            media_type=MediaType.IMAGE,
            content_type=content_type,
            size=len(data) if size is None else size,
            sha256=hashlib.sha256(data).hexdigest(),
            created_at=now,
            updated_at=now,
            upload_kind="single",
            object_key=original_key(media_id),
            upload_expires_at=now + timedelta(minutes=5),
            pending_owner="alice",
        )
        self.store.media[media_id] = record
        return record

    def verified(self, outcome: str) -> float:
        labels = {"media_type": "image", "outcome": outcome}
        return self.registry.get_sample_value("ferry_uploads_verified_total", labels) or 0.0


def error_code(record: MediaRecord) -> str | None:
    return record.error.code if record.error else None


def created(record: MediaRecord, version_id: str | None = None) -> CreatedObject:
    return CreatedObject(bucket=BUCKET, media_id=record.media_id, version_id=version_id)


@pytest.fixture
def world() -> World:
    return World()


async def test_good_bytes_become_ready(world: World) -> None:
    record = world.slot(JPEG)
    version = world.s3.put(record.object_key, JPEG)
    assert await world.step.run(created(record)) == "ok"
    ready = world.store.media[record.media_id]
    assert ready.state is MediaState.READY
    assert ready.meta == {"mime": "image/jpeg"}
    assert ready.version_id == version  # pinned to what was read
    assert ready.pending_owner is None
    blob = world.store.blobs[record.blob_key]
    assert (blob.refcount, blob.outcome, blob.version_id) == (1, MediaState.READY, version)
    assert world.publisher.states == ["uploaded", "ready"]
    assert world.verified("ok") == 1
    # Streamed in chunks of the configured size, once.
    assert len(world.s3.gets) == 1
    assert world.s3.bodies[0].reads == len(JPEG) // CHUNK + 2


async def test_the_announced_version_is_the_one_read(world: World) -> None:
    record = world.slot(JPEG)
    first = world.s3.put(record.object_key, JPEG)
    world.s3.put(record.object_key, b"later overwrite")
    assert await world.step.run(created(record, first)) == "ok"
    assert world.s3.gets[0]["VersionId"] == first
    assert world.store.media[record.media_id].version_id == first


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"size": len(JPEG) - 1}, "size_mismatch"),
        ({"size": len(JPEG) + 1}, "size_mismatch"),
        ({"content_type": "image/png"}, "type_mismatch"),
    ],
)
async def test_mismatch_fails_the_media_and_deletes_that_version(
    world: World, change: dict[str, Any], code: str
) -> None:
    record = world.slot(JPEG, **change)
    version = world.s3.put(record.object_key, JPEG)
    assert await world.step.run(created(record)) == "ok"
    failed = world.store.media[record.media_id]
    assert failed.state is MediaState.FAILED
    assert error_code(failed) == code
    assert world.s3.deletes == [{"Bucket": BUCKET, "Key": record.object_key, "VersionId": version}]
    assert world.store.blobs == {}  # never deduplicable
    assert world.publisher.states == ["failed"]
    assert world.verified(code) == 1


async def test_checksum_mismatch(world: World) -> None:
    record = world.slot(JPEG)
    tampered = JPEG[:-1] + b"\x00"
    world.s3.put(record.object_key, tampered)
    await world.step.run(created(record))
    failed = world.store.media[record.media_id]
    assert error_code(failed) == "checksum_mismatch"


async def test_an_oversized_object_is_not_read_to_the_end(world: World) -> None:
    record = world.slot(JPEG[:10])
    world.s3.put(record.object_key, JPEG * 100)
    await world.step.run(created(record))
    assert world.s3.bodies[0].reads == 1
    failed = world.store.media[record.media_id]
    assert error_code(failed) == "size_mismatch"


def discarded(world: World, reason: str) -> float:
    labels = {"reason": reason}
    return world.registry.get_sample_value("ferry_discarded_objects_total", labels) or 0.0


async def test_bytes_for_an_abandoned_slot_are_counted_and_deleted(world: World) -> None:
    media_id = new_media_id()
    version = world.s3.put(original_key(media_id), JPEG)
    orphan = CreatedObject(bucket=BUCKET, media_id=media_id, version_id=version)
    assert await world.step.run(orphan) == "orphan"
    assert world.s3.gets == []  # never verified
    assert world.s3.versions_of(original_key(media_id)) == []
    assert world.registry.get_sample_value("ferry_orphaned_objects_total") == 1
    assert discarded(world, "abandoned") == 1


async def test_a_deleted_media_whose_bytes_a_blob_shares_keeps_them(world: World) -> None:
    record = world.slot(JPEG)
    version = world.s3.put(record.object_key, JPEG)
    await world.step.run(created(record, version))
    del world.store.media[record.media_id]  # deleted by its owner; dedup copies hold the blob
    late = world.s3.put(record.object_key, JPEG)  # the URL replayed afterwards
    assert await world.step.run(created(record)) == "orphan"
    assert world.s3.versions_of(record.object_key) == [version]
    assert late not in world.s3.versions_of(record.object_key)


async def test_extra_versions_from_one_url_are_deleted_unverified(world: World) -> None:
    record = world.slot(JPEG)
    first = world.s3.put(record.object_key, JPEG)
    assert await world.step.run(created(record, first)) == "ok"
    extras = [world.s3.put(record.object_key, JPEG) for _ in range(5)]
    for extra in extras:
        assert await world.step.run(created(record, extra)) == "duplicate"
    assert world.s3.versions_of(record.object_key) == [first]
    assert len(world.s3.gets) == 1  # only the pinned version was ever read
    assert world.store.media[record.media_id].version_id == first
    assert world.publisher.states == ["uploaded", "ready"]
    assert discarded(world, "extra_version") == 5


async def test_without_versions_in_events_every_other_version_goes(world: World) -> None:
    record = world.slot(JPEG)
    first = world.s3.put(record.object_key, JPEG)
    assert await world.step.run(created(record)) == "ok"
    world.s3.put(record.object_key, JPEG)
    world.s3.put(record.object_key, b"anything at all")
    assert await world.step.run(created(record)) == "duplicate"
    assert world.s3.versions_of(record.object_key) == [first]


async def test_bytes_landing_after_the_slot_expired_expire_it_and_go(world: World) -> None:
    record = world.slot(JPEG)
    expired = record.model_copy(
        update={"upload_expires_at": datetime.now(UTC) - timedelta(minutes=11)}
    )
    world.store.media[record.media_id] = expired
    version = world.s3.put(record.object_key, JPEG)
    late = CreatedObject(
        bucket=BUCKET, media_id=record.media_id, version_id=version, created_at=datetime.now(UTC)
    )
    assert await world.step.run(late) == "orphan"
    settled = world.store.media[record.media_id]
    assert settled.state is MediaState.EXPIRED
    assert error_code(settled) == "upload_expired"
    assert settled.pending_owner is None
    assert world.s3.versions_of(record.object_key) == []
    assert world.s3.gets == []
    assert discarded(world, "expired") == 1


async def test_bytes_within_the_grace_after_expiry_still_commit(world: World) -> None:
    record = world.slot(JPEG)
    world.store.media[record.media_id] = record.model_copy(
        update={"upload_expires_at": datetime.now(UTC) - timedelta(minutes=9)}
    )
    version = world.s3.put(record.object_key, JPEG)
    assert await world.step.run(created(record, version)) == "ok"
    assert world.store.media[record.media_id].state is MediaState.READY


async def test_redelivery_after_a_crash_between_steps_finishes(world: World) -> None:
    record = world.slot(JPEG)
    world.s3.put(record.object_key, JPEG)
    await world.store.commit_upload(record, version_id="v1")
    assert await world.step.run(created(record), redelivered=True) == "ok"
    assert world.store.media[record.media_id].state is MediaState.READY
    assert world.s3.gets == []  # verified once, not again
    assert world.publisher.states == ["ready"]


async def test_redelivery_resumes_a_job_that_died_while_processing(world: World) -> None:
    record = world.slot(JPEG)
    world.s3.put(record.object_key, JPEG)
    await world.store.commit_upload(record, version_id="v1")
    await world.store.transition(record.media_id, MediaState.PROCESSING)
    # A fresh duplicate event is another job's business...
    assert await world.step.run(created(record)) == "duplicate"
    assert world.store.media[record.media_id].state is MediaState.PROCESSING
    # ...but a redelivered message means the job died: it is resumed, not dropped.
    assert await world.step.run(created(record), redelivered=True) == "ok"
    assert world.store.media[record.media_id].state is MediaState.READY


async def test_a_repeated_event_changes_nothing(world: World) -> None:
    record = world.slot(JPEG)
    world.s3.put(record.object_key, JPEG)
    await world.step.run(created(record))
    before = world.store.media[record.media_id]
    assert await world.step.run(created(record)) == "duplicate"
    assert world.store.media[record.media_id] == before
    assert world.store.blobs[record.blob_key].refcount == 1
    assert world.publisher.states == ["uploaded", "ready"]
    assert len(world.s3.gets) == 1


async def test_a_redelivery_announces_the_settled_state_again(world: World) -> None:
    # The attempt that settled it may have died before publishing.
    record = world.slot(JPEG)
    world.s3.put(record.object_key, JPEG)
    await world.step.run(created(record))
    assert await world.step.run(created(record), redelivered=True) == "duplicate"
    assert world.publisher.states == ["uploaded", "ready", "ready"]


async def test_losing_the_commit_race_is_done(world: World) -> None:
    record = world.slot(JPEG)
    world.s3.put(record.object_key, JPEG)
    world.store.stale_commits = True
    assert await world.step.run(created(record)) == "duplicate"
    assert world.publisher.published == []


async def test_bad_bytes_never_fail_a_media_another_worker_committed(world: World) -> None:
    record = world.slot(JPEG)
    world.s3.put(record.object_key, JPEG)
    bad = world.s3.put(record.object_key, b"not a jpeg at all")
    real_get = world.s3.get_object

    async def committed_meanwhile(**request: Any) -> dict[str, Any]:
        # Another worker, handling the good version's event, commits while we read.
        await world.store.commit_upload(record, version_id="v1")
        return await real_get(**request)

    world.s3.get_object = committed_meanwhile  # type: ignore[method-assign]
    assert await world.step.run(created(record, bad)) == "duplicate"
    assert world.store.media[record.media_id].state is MediaState.UPLOADED
    # The bad version goes; the committed one stays.
    assert world.s3.deletes == [{"Bucket": BUCKET, "Key": record.object_key, "VersionId": bad}]
    assert world.publisher.published == []


async def test_stale_rejection_on_an_unversioned_bucket_deletes_nothing(world: World) -> None:
    world.s3.versioned = False
    record = world.slot(JPEG)
    world.s3.put(record.object_key, b"not a jpeg at all")
    original_transition = world.store.transition

    async def someone_else_first(*args: Any, **kwargs: Any) -> MediaRecord:
        raise StaleTransition("raced")

    world.store.transition = someone_else_first  # type: ignore[method-assign]
    assert await world.step.run(created(record)) == "duplicate"
    world.store.transition = original_transition  # type: ignore[method-assign]
    assert world.s3.deletes == []
    assert world.publisher.published == []


async def test_an_announced_object_that_is_not_there_is_retried(world: World) -> None:
    # Raising sends the message back with a backoff; the last try fails the media.
    record = world.slot(JPEG)
    with pytest.raises(ObjectMissing):
        await world.step.run(created(record))
    assert world.store.media[record.media_id].state is MediaState.AWAITING_UPLOAD
    assert world.publisher.published == []


async def test_event_from_another_bucket_is_ignored(world: World) -> None:
    record = world.slot(JPEG)
    stray = CreatedObject(bucket="someone-else", media_id=record.media_id)
    assert await world.step.run(stray) == "ignored"
    assert world.s3.gets == []


@pytest.mark.parametrize(
    "state", [MediaState.AWAITING_UPLOAD, MediaState.UPLOADED, MediaState.PROCESSING]
)
async def test_give_up_fails_a_live_media(world: World, state: MediaState) -> None:
    record = world.slot(JPEG, state=state)
    await world.step.give_up(record.media_id)
    failed = world.store.media[record.media_id]
    assert failed.state is MediaState.FAILED
    assert error_code(failed) == PROCESSING_FAILED
    assert world.publisher.states == ["failed"]


@pytest.mark.parametrize("state", [MediaState.READY, MediaState.FAILED])
async def test_give_up_leaves_settled_media_alone(world: World, state: MediaState) -> None:
    record = world.slot(JPEG, state=state)
    await world.step.give_up(record.media_id)
    await world.step.give_up(new_media_id())  # no record at all
    assert world.store.media[record.media_id] == record
    assert world.publisher.published == []


# --- operating signals ---------------------------------------------------------------------------


async def test_ready_media_report_latency_from_the_event_and_the_bytes_stored(
    world: World,
) -> None:
    record = world.slot(JPEG)
    world.s3.put(record.object_key, JPEG)
    landed = datetime.now(UTC) - timedelta(seconds=3)
    event = CreatedObject(bucket=BUCKET, media_id=record.media_id, created_at=landed)
    assert await world.step.run(event) == "ok"

    labels = {"media_type": "image"}
    sample = world.registry.get_sample_value
    assert sample("ferry_processing_latency_seconds_count", labels) == 1
    assert 3 <= (sample("ferry_processing_latency_seconds_sum", labels) or 0) < 60
    assert sample("ferry_stored_bytes_total", {"kind": "original"}) == len(JPEG)
    assert sample("ferry_upload_bytes_sum", labels) == len(JPEG)


async def test_no_latency_without_an_event_time_and_none_for_refused_bytes(world: World) -> None:
    good = world.slot(JPEG)
    world.s3.put(good.object_key, JPEG)
    await world.step.run(created(good))
    bad = world.slot(JPEG)
    world.s3.put(bad.object_key, JPEG[:-1] + b"\x00")
    await world.step.run(
        CreatedObject(bucket=BUCKET, media_id=bad.media_id, created_at=datetime.now(UTC))
    )
    sample = world.registry.get_sample_value
    assert sample("ferry_processing_latency_seconds_count", {"media_type": "image"}) == 0
    assert sample("ferry_stored_bytes_total", {"kind": "original"}) == len(JPEG)


def test_processing_latency_is_never_negative() -> None:
    now = datetime.now(UTC)
    assert processing_latency(None, now) is None
    assert processing_latency(now - timedelta(seconds=2.5), now) == 2.5
    # Storage's clock ahead of ours: zero, not a negative observation.
    assert processing_latency(now + timedelta(seconds=1), now) == 0.0


async def test_an_unversioned_commit_still_resumes_on_redelivery(world: World) -> None:
    world.s3.versioned = False
    record = world.slot(JPEG)
    world.s3.put(record.object_key, JPEG)
    await world.store.commit_upload(record, version_id=None)
    assert await world.step.run(created(record), redelivered=True) == "ok"
    assert world.store.media[record.media_id].state is MediaState.READY
    assert world.s3.deletes == []


async def test_losing_the_commit_race_to_another_version_deletes_the_one_read(
    world: World,
) -> None:
    record = world.slot(JPEG)
    winner = world.s3.put(record.object_key, JPEG)
    loser = world.s3.put(record.object_key, JPEG)
    real_get = world.s3.get_object

    async def other_worker_commits_first(**request: Any) -> dict[str, Any]:
        # Another worker, on the other version's event, commits while this one streams.
        await world.store.commit_upload(record, version_id=winner)
        world.s3.get_object = real_get  # type: ignore[method-assign]
        return await real_get(**request)

    world.s3.get_object = other_worker_commits_first  # type: ignore[method-assign]
    assert await world.step.run(created(record, loser)) == "duplicate"
    assert world.store.media[record.media_id].version_id == winner
    assert world.s3.versions_of(record.object_key) == [winner]
