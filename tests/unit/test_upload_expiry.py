from datetime import UTC, datetime, timedelta

from media_service.lookup import upload_abandoned
from shared.media_records import Challenge, MediaRecord
from shared.models import MediaState, MediaType

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
GRACE = timedelta(minutes=10)


def record(state: MediaState, **fields: object) -> MediaRecord:
    base: dict[str, object] = {
        "media_id": "m_" + "a" * 22,
        "owner": "alice",
        "state": state,
        "media_type": MediaType.IMAGE,
        "content_type": "image/jpeg",
        "size": 10,
        "sha256": "b" * 64,
        "created_at": NOW,
        "updated_at": NOW,
        "upload_kind": "single",
        "object_key": "o/m_" + "a" * 22,
    }
    return MediaRecord.model_validate({**base, **fields})


def test_a_slot_is_abandoned_only_after_its_expiry_and_the_grace() -> None:
    slot = record(MediaState.AWAITING_UPLOAD, upload_expires_at=NOW)
    assert not upload_abandoned(slot, NOW + GRACE, GRACE)
    assert upload_abandoned(slot, NOW + GRACE + timedelta(seconds=1), GRACE)


def test_an_unanswered_challenge_is_abandoned_too() -> None:
    challenge = Challenge(offset=0, length=10, nonce="00" * 16, expires_at=NOW)
    pending = record(MediaState.AWAITING_PROOF, upload_kind="dedup", challenge=challenge)
    assert upload_abandoned(pending, NOW + 2 * GRACE, GRACE)


def test_a_challenge_taken_by_a_proof_that_crashed_still_expires() -> None:
    # The proof's process died after taking the challenge and before settling the media.
    taken = record(MediaState.AWAITING_PROOF, upload_kind="dedup", upload_expires_at=NOW)
    assert not upload_abandoned(taken, NOW + GRACE, GRACE)
    assert upload_abandoned(taken, NOW + GRACE + timedelta(seconds=1), GRACE)


def test_media_whose_bytes_arrived_never_expire_this_way() -> None:
    for state in (MediaState.UPLOADED, MediaState.PROCESSING, MediaState.READY):
        assert not upload_abandoned(record(state, upload_expires_at=NOW), NOW + 9 * GRACE, GRACE)
