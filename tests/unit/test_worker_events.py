import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.keys import new_media_id
from transcode_worker.events import (
    CreatedObject,
    ObjectsCreated,
    Poison,
    TestEvent,
    parse_event_time,
    parse_uploads_message,
)

BUCKET = "ferry-media"


def s3_record(key: str, *, event: str = "ObjectCreated:Put", **obj: Any) -> dict[str, Any]:
    """A record shaped like S3's (and the emulator's) event notifications."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2025-01-01T00:00:00.000Z",
        "eventName": event,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "uploads",
            "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
            "object": {"key": key, "size": 3, "eTag": "abc", **obj},
        },
    }


def body(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def test_url_encoded_key_gives_the_media_id() -> None:
    media_id = new_media_id()
    parsed = parse_uploads_message(body(s3_record(f"o%2F{media_id}")))
    assert parsed == ObjectsCreated((CreatedObject(bucket=BUCKET, media_id=media_id),))


def test_plain_key_gives_the_media_id() -> None:
    media_id = new_media_id()
    parsed = parse_uploads_message(body(s3_record(f"o/{media_id}")))
    assert isinstance(parsed, ObjectsCreated)
    assert [created.media_id for created in parsed.objects] == [media_id]


def test_a_record_without_bucket_still_names_the_media() -> None:
    media_id = new_media_id()
    record = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": f"o/{media_id}"}}}
    parsed = parse_uploads_message(body(record))
    assert parsed == ObjectsCreated((CreatedObject(media_id=media_id),))


def test_version_id_is_kept_when_sent() -> None:
    media_id = new_media_id()
    parsed = parse_uploads_message(body(s3_record(f"o%2F{media_id}", versionId="v-1")))
    assert isinstance(parsed, ObjectsCreated)
    assert parsed.objects[0].version_id == "v-1"


@pytest.mark.parametrize("version", ["null", "", None, 7])
def test_no_usable_version_id_means_none(version: Any) -> None:
    media_id = new_media_id()
    parsed = parse_uploads_message(body(s3_record(f"o%2F{media_id}", versionId=version)))
    assert isinstance(parsed, ObjectsCreated)
    assert parsed.objects[0].version_id is None


def test_multipart_and_repeated_records_become_one_object_each() -> None:
    first, second = new_media_id(), new_media_id()
    parsed = parse_uploads_message(
        body(
            s3_record(f"o%2F{first}", event="ObjectCreated:CompleteMultipartUpload"),
            s3_record(f"o%2F{first}", event="ObjectCreated:CompleteMultipartUpload"),
            s3_record(f"o%2F{second}", event="ObjectCreated:Copy"),
        )
    )
    assert isinstance(parsed, ObjectsCreated)
    assert [created.media_id for created in parsed.objects] == [first, second]


@pytest.mark.parametrize(
    "record",
    [
        s3_record("d%2F" + "a" * 64 + "%2Fthumb_320.webp"),  # a derivative
        s3_record("o%2F..%2Fsecret"),  # not a media id
        s3_record("o%2F"),
        s3_record(f"o%2F{new_media_id()}", event="ObjectRemoved:Delete"),
    ],
)
def test_records_about_anything_else_are_skipped(record: dict[str, Any]) -> None:
    assert parse_uploads_message(body(record)) == ObjectsCreated(())


def test_s3_test_event() -> None:
    probe = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2025-01-01T00:00:00.000Z",
        "Bucket": BUCKET,
        "RequestId": "r",
        "HostId": "h",
    }
    assert parse_uploads_message(json.dumps(probe)) == TestEvent()


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "not json",
        "{",
        "[]",
        "42",
        '"Records"',
        "{}",
        '{"Records": {}}',
        '{"Records": [1]}',
        '{"Records": [{"eventName": "ObjectCreated:Put"}]}',
        '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}, "object": {}}}]}',
        '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": 1}}}]}',
        '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": 1},'
        ' "object": {"key": "o/x"}}}]}',
        '{"Event": "s3:SomethingElse"}',
    ],
)
def test_garbage_is_poison(raw: str) -> None:
    assert isinstance(parse_uploads_message(raw), Poison)


def test_one_bad_record_poisons_the_message() -> None:
    good = s3_record(f"o%2F{new_media_id()}")
    parsed = parse_uploads_message(body(good, {"eventName": "ObjectCreated:Put"}))
    assert isinstance(parsed, Poison)
    assert parsed.reason.startswith("record 1")


def test_the_event_time_is_carried_as_utc() -> None:
    media_id = new_media_id()
    parsed = parse_uploads_message(body(s3_record(f"o/{media_id}")))
    assert isinstance(parsed, ObjectsCreated)
    assert parsed.objects[0].created_at == datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-05-01T12:00:00.123Z", datetime(2025, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)),
        ("2025-05-01T14:00:00+02:00", datetime(2025, 5, 1, 12, 0, tzinfo=UTC)),
        ("2025-05-01T12:00:00", datetime(2025, 5, 1, 12, 0, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        (1714564800, None),
    ],
)
def test_event_times_parse_or_are_left_out(value: object, expected: datetime | None) -> None:
    assert parse_event_time(value) == expected


def test_two_records_of_one_object_at_different_times_are_one_piece_of_work() -> None:
    media_id = new_media_id()
    later = {**s3_record(f"o/{media_id}"), "eventTime": "2025-01-01T00:00:01.000Z"}
    parsed = parse_uploads_message(body(s3_record(f"o/{media_id}"), later))
    assert isinstance(parsed, ObjectsCreated)
    assert len(parsed.objects) == 1
