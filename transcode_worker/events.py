"""What an uploads-queue message says, decided without I/O.

The queue receives S3 event notifications straight from the bucket. A body is one of:
- an S3 event (`{"Records": [...]}`): the originals created, by media id (keys are URL-encoded);
- S3's `s3:TestEvent`, sent once when the notification is configured: nothing to do;
- anything else: a poison message, which no retry will fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.keys import media_id_from_event_key

OBJECT_CREATED_PREFIX = "ObjectCreated:"
TEST_EVENT = "s3:TestEvent"


@dataclass(frozen=True, kw_only=True)
class CreatedObject:
    """One original that landed in the bucket."""

    media_id: str
    # None when the record does not say (S3 always does; hand-written events may not).
    bucket: str | None = None
    # Present when the bucket is versioned (real S3 sends it; the emulator does not).
    version_id: str | None = None
    # When storage created the object (the record's `eventTime`, UTC): where the processing
    # latency starts. Not part of the identity: two records for one version are one object.
    created_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ObjectsCreated:
    """An S3 event: the originals it names (possibly none, e.g. keys outside `o/`)."""

    objects: tuple[CreatedObject, ...]


@dataclass(frozen=True)
class TestEvent:
    """S3's probe when a notification is configured."""

    __test__ = False  # not a pytest test class, whatever its name says


@dataclass(frozen=True)
class Poison:
    """A body that will never parse: it goes to the dead-letter queue, not through retries."""

    reason: str


ParsedMessage = ObjectsCreated | TestEvent | Poison


def parse_uploads_message(body: str) -> ParsedMessage:
    """Classify one uploads-queue message body."""
    try:
        document = json.loads(body)
    except ValueError:
        return Poison("the body is not JSON")
    if not isinstance(document, dict):
        return Poison("the body is not a JSON object")
    if document.get("Event") == TEST_EVENT:
        return TestEvent()
    records = document.get("Records")
    if not isinstance(records, list):
        return Poison("the body is neither an S3 event nor an S3 test event")
    objects: list[CreatedObject] = []
    for index, record in enumerate(records):
        parsed = _created_object(record)
        if isinstance(parsed, Poison):
            return Poison(f"record {index}: {parsed.reason}")
        # Two records for the same version are one piece of work.
        if parsed is not None and parsed not in objects:
            objects.append(parsed)
    return ObjectsCreated(tuple(objects))


def _created_object(record: Any) -> CreatedObject | Poison | None:
    """The original a record announces; None for records about something else."""
    if not isinstance(record, dict):
        return Poison("not an object")
    event_name = record.get("eventName")
    s3 = record.get("s3")
    if not isinstance(event_name, str) or not isinstance(s3, dict):
        return Poison("not an S3 event record")
    if not event_name.startswith(OBJECT_CREATED_PREFIX):
        # Removals, restores, tagging...: the commit step only cares about new originals.
        return None
    obj = s3.get("object")
    if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
        return Poison("no object key")
    key: str = obj["key"]
    bucket = s3.get("bucket", {})
    bucket_name = bucket.get("name") if isinstance(bucket, dict) else None
    if bucket_name is not None and not isinstance(bucket_name, str):
        return Poison("the bucket name is not a string")
    media_id = media_id_from_event_key(key)
    if media_id is None:
        # A key outside `o/` (or not a media id) is not an upload slot: nothing to commit.
        return None
    version_id = obj.get("versionId")
    # "null" is the version of an object written while versioning was off: no pin to take.
    if not isinstance(version_id, str) or version_id in ("", "null"):
        version_id = None
    return CreatedObject(
        bucket=bucket_name,
        media_id=media_id,
        version_id=version_id,
        created_at=parse_event_time(record.get("eventTime")),
    )


def parse_event_time(value: object) -> datetime | None:
    """An S3 record's `eventTime` ("2024-05-01T12:00:00.123Z") as an aware UTC datetime.

    None when absent or unreadable: the time only feeds a metric, never a decision.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # S3 writes UTC
    return moment.astimezone(UTC)
