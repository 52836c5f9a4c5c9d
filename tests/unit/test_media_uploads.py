"""The upload lifecycle's decisions (`media_service.uploads`), against in-memory stand-ins.

The same flows run against the emulator, over HTTP, in the integration tests; these pin the
rules themselves and run in milliseconds.
"""

from datetime import timedelta

import pytest

from media_service.planning import expected_proof
from shared.clock import utcnow
from shared.errors import (
    Conflict,
    FerryError,
    Forbidden,
    Gone,
    NotFound,
    RateLimited,
    Unprocessable,
)
from shared.models import CompletedPart, MediaState, SingleUpload, UploadRequest
from tests.unit.media_world import MIB, OWNER, MediaWorld, request

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8


@pytest.fixture
def world() -> MediaWorld:
    return MediaWorld(max_pending_uploads=2)


async def test_a_small_upload_gets_one_signed_put(world: MediaWorld) -> None:
    slot = await world.uploads.request_slot(OWNER, request(JPEG))
    assert isinstance(slot.upload, SingleUpload)
    assert slot.dedup is None
    record = world.records.media[slot.media_id]
    assert record.state is MediaState.AWAITING_UPLOAD
    assert (record.upload_kind, record.pending_owner) == ("single", OWNER)
    assert slot.upload.url == f"fake://put/{record.object_key}"
    labels = {"media_type": "image", "kind": "single"}
    assert world.sample("ferry_upload_slots_total", **labels) == 1


async def test_a_large_upload_gets_a_multipart_plan(world: MediaWorld) -> None:
    slot = await world.uploads.request_slot(OWNER, request(JPEG, size=20 * MIB))
    record = world.records.media[slot.media_id]
    assert record.upload_kind == "multipart"
    assert (record.part_size, record.part_count) == (8 * MIB, 3)
    assert world.bucket.uploads == {record.upload_id: record.object_key}


@pytest.mark.parametrize(
    ("upload", "code"),
    [
        (request(JPEG, content_type="application/x-msdownload"), "unsupported_media_type"),
        (request(JPEG, size=26 * MIB), "too_large"),
    ],
)
async def test_refused_slots_are_counted_by_code(
    world: MediaWorld, upload: UploadRequest, code: str
) -> None:
    with pytest.raises(FerryError) as raised:
        await world.uploads.request_slot(OWNER, upload)
    assert raised.value.error_code == code
    assert world.sample("ferry_upload_slot_refusals_total", code=code) == 1
    assert world.records.media == {}


async def test_pending_uploads_are_capped(world: MediaWorld) -> None:
    for _ in range(2):
        await world.uploads.request_slot(OWNER, request(JPEG))
    with pytest.raises(RateLimited) as raised:
        await world.uploads.request_slot(OWNER, request(JPEG))
    assert raised.value.error_code == "too_many_pending_uploads"
    counted = world.sample("ferry_upload_slot_refusals_total", code="too_many_pending_uploads")
    assert counted == 1


async def test_known_bytes_get_a_challenge_and_a_right_proof_shares_them(
    world: MediaWorld,
) -> None:
    blob = world.stored(JPEG)
    slot = await world.uploads.request_slot(OWNER, request(JPEG))
    assert slot.dedup is not None
    assert slot.upload is None
    challenge = slot.dedup
    content = JPEG[challenge.offset : challenge.offset + challenge.length]
    proof = expected_proof(challenge.nonce, content)
    document = await world.uploads.prove(OWNER, slot.media_id, proof)
    assert document.state is MediaState.READY
    assert world.records.media[slot.media_id].object_key == blob.object_key
    assert world.records.blobs[blob.blob_key].refcount == 2
    assert world.sample("ferry_dedup_proofs_total", outcome="ok") == 1


async def test_a_wrong_proof_fails_the_media_and_spends_the_challenge(world: MediaWorld) -> None:
    world.stored(JPEG)
    slot = await world.uploads.request_slot(OWNER, request(JPEG))
    with pytest.raises(Forbidden):
        await world.uploads.prove(OWNER, slot.media_id, "0" * 64)
    failed = world.records.media[slot.media_id]
    assert failed.state is MediaState.FAILED
    assert failed.error is not None
    assert failed.error.code == "bad_proof"
    with pytest.raises(Conflict):  # one try per challenge
        await world.uploads.prove(OWNER, slot.media_id, "0" * 64)
    assert world.sample("ferry_dedup_proofs_total", outcome="bad_proof") == 1


async def test_someone_elses_media_is_not_found(world: MediaWorld) -> None:
    slot = await world.uploads.request_slot(OWNER, request(JPEG))
    with pytest.raises(NotFound):
        await world.uploads.delete("mallory", slot.media_id)
    assert slot.media_id in world.records.media


async def test_multipart_parts_are_signed_within_the_plan(world: MediaWorld) -> None:
    slot = await world.uploads.request_slot(OWNER, request(JPEG, size=20 * MIB))
    signed = await world.uploads.sign_parts(OWNER, slot.media_id, [3, 1, 1])
    assert [part.part_number for part in signed] == [1, 3]
    with pytest.raises(Unprocessable) as raised:
        await world.uploads.sign_parts(OWNER, slot.media_id, [4])
    assert raised.value.error_code == "invalid_part_number"


async def test_completion_needs_every_part_once(world: MediaWorld) -> None:
    slot = await world.uploads.request_slot(OWNER, request(JPEG, size=20 * MIB))
    parts = [CompletedPart(part_number=n, etag=f"e{n}") for n in (1, 2, 3)]
    with pytest.raises(Unprocessable):
        await world.uploads.complete(OWNER, slot.media_id, parts[:2])
    document = await world.uploads.complete(OWNER, slot.media_id, parts)
    assert document.state is MediaState.AWAITING_UPLOAD  # the worker verifies what arrived
    record = world.records.media[slot.media_id]
    assert world.bucket.completed == [(record.object_key, [(1, "e1"), (2, "e2"), (3, "e3")])]
    completions = "ferry_multipart_completions_total"
    assert world.sample(completions, outcome="invalid_parts") == 1
    assert world.sample(completions, outcome="ok") == 1


async def test_an_expired_session_is_gone(world: MediaWorld) -> None:
    slot = await world.uploads.request_slot(OWNER, request(JPEG, size=20 * MIB))
    record = world.records.media[slot.media_id]
    world.records.media[slot.media_id] = record.model_copy(
        update={"upload_expires_at": utcnow() - timedelta(seconds=1)}
    )
    with pytest.raises(Gone):
        await world.uploads.sign_parts(OWNER, slot.media_id, [1])


async def test_an_abandoned_slot_settles_as_expired_when_next_read(world: MediaWorld) -> None:
    slot = await world.uploads.request_slot(OWNER, request(JPEG, size=20 * MIB))
    record = world.records.media[slot.media_id]
    past = utcnow() - timedelta(seconds=world.settings.expiry_grace_seconds + 1)
    world.records.media[slot.media_id] = record.model_copy(update={"upload_expires_at": past})
    with pytest.raises(Conflict):  # no longer open
        await world.uploads.sign_parts(OWNER, slot.media_id, [1])
    expired = world.records.media[slot.media_id]
    assert expired.state is MediaState.EXPIRED
    assert expired.pending_owner is None
    assert world.bucket.aborted == [record.upload_id]


async def test_abandoning_an_upload_drops_row_and_session(world: MediaWorld) -> None:
    slot = await world.uploads.request_slot(OWNER, request(JPEG, size=20 * MIB))
    upload_id = world.records.media[slot.media_id].upload_id
    await world.uploads.delete(OWNER, slot.media_id)
    assert world.records.media == {}
    assert world.bucket.aborted == [upload_id]


async def test_deleting_the_last_holder_of_some_bytes_deletes_them(world: MediaWorld) -> None:
    slot = await world.uploads.request_slot(OWNER, request(JPEG))
    record = world.records.media[slot.media_id]
    await world.records.commit_upload(record, version_id="v7")
    world.settle(slot.media_id, MediaState.READY)
    await world.uploads.delete(OWNER, slot.media_id)
    assert world.records.media == {}
    assert world.records.blobs == {}
    assert world.bucket.deleted == [(record.object_key, "v7")]


async def test_shared_bytes_stay_while_another_media_holds_them(world: MediaWorld) -> None:
    blob = world.stored(JPEG)
    slot = await world.uploads.request_slot(OWNER, request(JPEG))
    assert slot.dedup is not None
    content = JPEG[slot.dedup.offset : slot.dedup.offset + slot.dedup.length]
    await world.uploads.prove(OWNER, slot.media_id, expected_proof(slot.dedup.nonce, content))
    await world.uploads.delete(OWNER, slot.media_id)
    assert world.records.blobs[blob.blob_key].refcount == 1
    assert world.bucket.deleted == []


async def test_a_held_users_new_upload_is_held_from_its_first_moment(world: MediaWorld) -> None:
    world.lifecycle.user_holds[OWNER] = "case 42"
    slot = await world.uploads.request_slot(OWNER, request(JPEG))
    assert isinstance(slot.upload, SingleUpload)
    record = world.records.media[slot.media_id]
    assert (record.user_hold, record.legal_hold_reason) == (True, "case 42")
    assert len(world.records.media) == 1  # the refused first attempt wrote nothing


async def test_a_held_users_dedup_slot_is_held_too(world: MediaWorld) -> None:
    world.stored(JPEG)
    world.lifecycle.user_holds[OWNER] = "case 7"
    slot = await world.uploads.request_slot(OWNER, request(JPEG))
    assert slot.dedup is not None
    record = world.records.media[slot.media_id]
    assert record.state is MediaState.AWAITING_PROOF
    assert (record.user_hold, record.legal_hold_reason) == (True, "case 7")


async def test_stored_bytes_of_another_size_get_an_upload_not_a_challenge(
    world: MediaWorld,
) -> None:
    world.stored(JPEG)
    slot = await world.uploads.request_slot(OWNER, request(JPEG, size=len(JPEG) + 1))
    assert isinstance(slot.upload, SingleUpload)
    assert slot.dedup is None
