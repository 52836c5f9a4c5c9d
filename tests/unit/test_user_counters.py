"""`UserCounters.admit` when DynamoDB cancels a slot's transaction for a conflict (another
transaction held one of its items; the emulator serialises transactions, so it never does):
the slot is tried again, nothing is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from media_service.user_counters import MAX_ATTEMPTS, SlotLimits, UserCounters
from shared.errors import RateLimited

LIMITS = SlotLimits(per_minute=60, max_pending=20)
ROW: Any = {"TableName": "media", "Item": {"media_id": {"S": "m_x"}}}


def _conflict() -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
            "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
        },
        "TransactWriteItems",
    )


class ConflictingDynamo:
    """DynamoDB answering `conflicts` cancelled transactions, then applying them."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.calls = 0

    async def transact_write_items(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.conflicts:
            raise _conflict()
        return {}


async def _never() -> int:
    raise AssertionError("no recount below the limit")


async def test_a_conflict_is_retried_not_refused() -> None:
    db = ConflictingDynamo(conflicts=2)
    counters = UserCounters(db, "rate-limits")  # type: ignore[arg-type]
    await counters.admit(
        "alice", now=datetime.now(UTC), limits=LIMITS, count_pending=_never, create=ROW
    )
    assert db.calls == 3


async def test_conflicts_without_end_ask_the_client_to_retry() -> None:
    db = ConflictingDynamo(conflicts=MAX_ATTEMPTS)
    counters = UserCounters(db, "rate-limits")  # type: ignore[arg-type]
    with pytest.raises(RateLimited) as refused:
        await counters.admit(
            "alice", now=datetime.now(UTC), limits=LIMITS, count_pending=_never, create=ROW
        )
    assert refused.value.headers == {"Retry-After": "1"}
    assert db.calls == MAX_ATTEMPTS
