"""The lifetime rules as pure functions: what is due for a record at a time, and when next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.token import main as token_main
from media_service.retention import Action, Policy, decide, next_due
from shared.auth import issue_token, verify_token
from shared.lifecycle import (
    LifecycleSettings,
    bucket_lifecycle_rules,
    cloudformation_lifecycle_rules,
    days,
)
from shared.media_records import Challenge, MediaRecord
from shared.models import MediaState, MediaType
from shared.settings import CommonSettings

T0 = datetime(2030, 1, 1, tzinfo=UTC)
POLICY = Policy(
    unsent_ttl=timedelta(days=1),
    retention_original=timedelta(days=365),
    retention_derivatives=timedelta(days=730),
    abandon_grace=timedelta(minutes=10),
    recheck=timedelta(minutes=1),
)


def record(state: MediaState = MediaState.READY, **fields: Any) -> MediaRecord:
    base: dict[str, object] = {
        "media_id": "m_0123456789abcdef",
        "owner": "alice",
        "state": state,
        "media_type": MediaType.VIDEO,
        "content_type": "video/mp4",
        "size": 10,
        "sha256": "a" * 64,
        "created_at": T0,
        "updated_at": T0,
        "upload_kind": "single",
        "object_key": "o/m_0123456789abcdef",
        "blob_ref": state is not MediaState.AWAITING_UPLOAD,
    }
    return MediaRecord.model_validate({**base, **fields})


def test_a_fresh_media_waits_for_its_unsent_ttl() -> None:
    media = record()
    assert decide(media, T0 + timedelta(hours=23), POLICY) is Action.NONE
    assert next_due(media, T0, POLICY) == T0 + timedelta(days=1)
    assert decide(media, T0 + timedelta(days=1), POLICY) is Action.CHECK_UNSENT


def test_a_referenced_media_counts_from_its_last_reference() -> None:
    media = record(last_referenced_at=T0 + timedelta(days=10))
    assert decide(media, T0 + timedelta(days=10, hours=23), POLICY) is Action.NONE
    assert next_due(media, T0, POLICY) == T0 + timedelta(days=11)
    assert decide(media, T0 + timedelta(days=11), POLICY) is Action.CHECK_UNSENT


def test_retention_retires_the_original_then_the_derivatives() -> None:
    seen = T0 + timedelta(days=364, hours=12)  # referenced recently: not an unsent candidate
    media = record(last_referenced_at=seen)
    assert next_due(media, seen, POLICY) == T0 + timedelta(days=365)
    assert decide(media, T0 + timedelta(days=365), POLICY) is Action.RETIRE_ORIGINAL
    retired = record(
        MediaState.EXPIRED,
        original_retired=True,
        blob_ref=False,
        derivatives_ref=True,
        last_referenced_at=T0 + timedelta(days=729, hours=12),
    )
    assert decide(retired, T0 + timedelta(days=729, hours=13), POLICY) is Action.NONE
    assert next_due(retired, T0 + timedelta(days=729, hours=13), POLICY) == T0 + timedelta(days=730)
    assert decide(retired, T0 + timedelta(days=730), POLICY) is Action.RETIRE_DERIVATIVES
    done = retired.model_copy(update={"derivatives_retired": True, "derivatives_ref": False})
    late = T0 + timedelta(days=729, hours=13)
    assert next_due(done, late, POLICY) == T0 + timedelta(days=730, hours=12)  # unsent only


@pytest.mark.parametrize("flag", ["legal_hold", "user_hold"])
def test_a_held_media_is_never_deleted_or_retired(flag: str) -> None:
    media = record(MediaState.READY, **{flag: True})
    for later in (timedelta(days=2), timedelta(days=366), timedelta(days=800)):
        assert decide(media, T0 + later, POLICY) is Action.APPLY_HOLD
    assert next_due(media, T0, POLICY) is None  # settled: nothing more to hold
    processing = record(MediaState.PROCESSING, **{flag: True})
    assert next_due(processing, T0, POLICY) == T0 + POLICY.recheck  # derivatives may appear
    slot = record(
        MediaState.AWAITING_UPLOAD, upload_expires_at=T0 + timedelta(minutes=5), **{flag: True}
    )
    assert next_due(slot, T0, POLICY) == T0 + POLICY.recheck
    assert decide(slot, T0 + timedelta(minutes=16), POLICY) is Action.SETTLE_ABANDONED


def test_an_abandoned_slot_settles_then_goes_with_the_ttl() -> None:
    slot = record(MediaState.AWAITING_UPLOAD, upload_expires_at=T0 + timedelta(minutes=5))
    assert next_due(slot, T0, POLICY) == T0 + timedelta(minutes=15)
    short = Policy(**{**POLICY.__dict__, "unsent_ttl": timedelta(minutes=2)})
    assert next_due(slot, T0, short) == T0 + timedelta(minutes=2)  # the worker may finish first
    assert next_due(slot, T0 + timedelta(minutes=3), short) == T0 + timedelta(minutes=15)
    assert decide(slot, T0 + timedelta(minutes=15), POLICY) is Action.NONE
    assert decide(slot, T0 + timedelta(minutes=16), POLICY) is Action.SETTLE_ABANDONED
    settled = record(MediaState.EXPIRED, blob_ref=False)
    assert decide(settled, T0 + timedelta(hours=2), POLICY) is Action.NONE
    assert decide(settled, T0 + timedelta(days=1), POLICY) is Action.CHECK_UNSENT


def test_an_unanswered_challenge_settles_too() -> None:
    challenge = Challenge(offset=0, length=1, nonce="00", expires_at=T0 + timedelta(minutes=5))
    pending = record(MediaState.AWAITING_PROOF, challenge=challenge, blob_ref=False)
    assert decide(pending, T0 + timedelta(minutes=16), POLICY) is Action.SETTLE_ABANDONED


def test_a_challenge_a_crashed_proof_took_settles_by_the_slot_expiry() -> None:
    # The proof's process died between taking the challenge and settling the media.
    taken = record(
        MediaState.AWAITING_PROOF,
        upload_kind="dedup",
        upload_expires_at=T0 + timedelta(minutes=5),
        blob_ref=False,
    )
    assert decide(taken, T0 + timedelta(minutes=15), POLICY) is Action.NONE
    assert decide(taken, T0 + timedelta(minutes=16), POLICY) is Action.SETTLE_ABANDONED


def test_a_live_slot_is_never_deleted_even_past_a_short_ttl() -> None:
    short = Policy(**{**POLICY.__dict__, "unsent_ttl": timedelta(seconds=1)})
    slot = record(MediaState.AWAITING_UPLOAD, upload_expires_at=T0 + timedelta(minutes=5))
    assert decide(slot, T0 + timedelta(minutes=1), short) is Action.NONE


def test_media_the_worker_still_processes_is_left_to_it() -> None:
    media = record(MediaState.PROCESSING)
    assert decide(media, T0 + timedelta(days=900), POLICY) is Action.NONE
    assert next_due(media, T0, POLICY) == T0 + POLICY.recheck


def test_an_owner_deletion_under_hold_completes_once_released() -> None:
    media = record(owner_deleted_at=T0, legal_hold=True)
    assert decide(media, T0, POLICY) is Action.APPLY_HOLD
    released = media.model_copy(update={"legal_hold": False})
    assert decide(released, T0, POLICY) is Action.DELETE


def test_policy_reads_the_settings() -> None:
    settings = LifecycleSettings(unsent_media_ttl_seconds=5, sweep_interval_seconds=2)
    policy = Policy.from_settings(settings, abandon_grace_seconds=3)
    assert policy.unsent_ttl == timedelta(seconds=5)
    assert policy.abandon_grace == timedelta(seconds=3)
    assert policy.retention_original == timedelta(days=365)
    assert policy.retention_derivatives == timedelta(days=730)


def test_derivatives_may_not_go_before_originals() -> None:
    with pytest.raises(ValueError, match="RETENTION_DERIVATIVES_SECONDS"):
        LifecycleSettings(retention_original_seconds=10, retention_derivatives_seconds=5)


def test_bucket_rules_follow_the_settings_and_never_expire_by_age() -> None:
    settings = LifecycleSettings(
        cold_storage_after_seconds=90 * 86_400, cold_storage_class="STANDARD_IA"
    )
    rules = {rule["ID"]: rule for rule in bucket_lifecycle_rules(settings)["Rules"]}
    assert rules["originals"]["Transitions"] == [{"Days": 90, "StorageClass": "STANDARD_IA"}]
    assert all("Days" not in rule.get("Expiration", {}) for rule in rules.values())
    abort = rules["abandoned-multipart-uploads"]["AbortIncompleteMultipartUpload"]
    assert abort == {"DaysAfterInitiation": 1}
    cfn = cloudformation_lifecycle_rules(bucket_lifecycle_rules(settings))
    assert cfn[0]["Transitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 90}]
    assert days(1) == 1
    assert days(86_401) == 2


def test_tokens_carry_roles() -> None:
    admin = verify_token(issue_token("ops", "s" * 40, roles=("admin",)), "s" * 40)
    assert admin.is_admin
    assert admin.roles == frozenset({"admin"})
    plain = verify_token(issue_token("alice", "s" * 40), "s" * 40)
    assert not plain.is_admin


def test_make_token_role_admin_prints_an_admin_token(capsys: pytest.CaptureFixture[str]) -> None:
    """`make token USER=ops ROLE=admin` runs `python -m devstack.token ops --role admin`."""
    assert token_main(["ops", "--role", "admin"]) == 0
    secret = CommonSettings().auth_jwt_secret
    identity = verify_token(capsys.readouterr().out.strip(), secret)
    assert (identity.user_id, identity.roles) == ("ops", frozenset({"admin"}))
