"""What a media counts for in its owner's usage, and how transitions move the counters."""

from __future__ import annotations

import pytest

from shared.models import MediaState
from shared.usage import NOTHING, Share, share_of, usage_update

S = MediaState


@pytest.mark.parametrize("state", [S.AWAITING_UPLOAD, S.AWAITING_PROOF])
def test_a_pending_slot_counts_its_declared_bytes_as_pending(state: MediaState) -> None:
    assert share_of(state, 100, holds_bytes=False) == Share(pending_bytes=100, pending_count=1)


@pytest.mark.parametrize(
    "state", [S.UPLOADED, S.PROCESSING, S.READY, S.BLOCKED, S.FAILED, S.EXPIRED]
)
def test_verified_bytes_count_as_stored_until_deleted(state: MediaState) -> None:
    assert share_of(state, 100, holds_bytes=True) == Share(stored_bytes=100, media_count=1)


@pytest.mark.parametrize("state", [S.FAILED, S.EXPIRED])
def test_a_slot_that_never_got_its_bytes_counts_nothing(state: MediaState) -> None:
    assert share_of(state, 100, holds_bytes=False) == NOTHING


def test_verification_moves_pending_bytes_to_stored_and_keeps_the_quota_total() -> None:
    before = share_of(S.AWAITING_UPLOAD, 100, holds_bytes=False)
    after = share_of(S.UPLOADED, 100, holds_bytes=True)
    delta = after.minus(before)
    assert delta == Share(stored_bytes=100, pending_bytes=-100, media_count=1, pending_count=-1)
    item = usage_update("t", "alice", delta)["Update"]
    assert item["ExpressionAttributeValues"][":used_bytes"] == {"N": "0"}
    assert "ConditionExpression" not in item


def test_a_slot_is_admitted_only_while_the_total_leaves_room() -> None:
    item = usage_update("t", "alice", Share(pending_bytes=100, pending_count=1), room=900)["Update"]
    assert item["Key"] == {"bucket_key": {"S": "usage#alice"}}
    assert item["ConditionExpression"] == "attribute_not_exists(used_bytes) OR used_bytes <= :room"
    assert item["ExpressionAttributeValues"][":room"] == {"N": "900"}
