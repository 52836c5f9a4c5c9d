"""The worker's lanes and dead letters, decided without I/O: which lane, what a job says, which
media a dead letter was about."""

import json

from shared.keys import new_media_id
from shared.media_records import WATCH_SHARDS, watch_key
from shared.models import MediaState, MediaType
from transcode_worker.dead_letters import media_ids_of
from transcode_worker.events import ObjectsCreated, parse_uploads_message
from transcode_worker.lanes import DeriveJob, Lane, lane_of, parse_derive_job
from transcode_worker.reconciler import s3_event

MEDIA_ID = new_media_id()


def test_videos_have_a_lane_of_their_own() -> None:
    assert lane_of(MediaType.VIDEO) is Lane.VIDEO
    for media_type in (MediaType.IMAGE, MediaType.VOICE, MediaType.DOCUMENT):
        assert lane_of(media_type) is Lane.DERIVE


def test_a_derive_job_round_trips_and_garbage_is_no_job() -> None:
    job = DeriveJob(media_id="m_1")
    assert parse_derive_job(job.model_dump_json()) == job
    assert parse_derive_job("not json") is None
    assert parse_derive_job(json.dumps({"other": 1})) is None


def test_dead_letters_name_their_media() -> None:
    event = s3_event("bucket", MEDIA_ID)
    assert media_ids_of("uploads", event) == [MEDIA_ID]
    assert media_ids_of("derive", DeriveJob(media_id="m_x").model_dump_json()) == ["m_x"]
    assert media_ids_of("derive_video", "{") is None
    assert media_ids_of("uploads", "this is not json {") is None


def test_the_reconcilers_event_reads_as_the_bucket_would_send_it() -> None:
    parsed = parse_uploads_message(s3_event("bucket", MEDIA_ID))
    assert isinstance(parsed, ObjectsCreated)
    (created,) = parsed.objects
    assert (created.bucket, created.media_id) == ("bucket", MEDIA_ID)
    assert created.created_at is not None


def test_watch_keys_spread_over_shards_per_state() -> None:
    keys = {watch_key(MediaState.UPLOADED, f"m_{n}") for n in range(200)}
    assert keys == {f"uploaded#{shard}" for shard in range(WATCH_SHARDS)}
    assert watch_key(MediaState.PROCESSING, "ignored", 3) == "processing#3"
