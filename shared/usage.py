"""Per-user usage: one counter item per user, moved in the same transaction as the media state
change that justifies it (slot, verification, dedup proof, failure, expiry, deletion).

What a media counts for is a pure function of its record (`share_of`), so every write applies
`share_of(after) - share_of(before)`: replays and retries of a guarded transition apply nothing
twice, because the transition itself is conditional. A media created before counting existed
(`usage_counted` unset) never moves the counters, so they cannot go negative on old rows.

The item is the per-user counter that later grows a rate bucket and a pending quota (issue 14):
one conditional update per slot, whatever the size of the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import PayloadTooLarge
from shared.media_states import PENDING_CLIENT
from shared.models import ContractModel, MediaState

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

# The item lives in the rate-limits table beside the slot counter item (`user#<owner>`,
# media_service.user_counters), with no expiry attribute: it stays. A separate item, because a
# slot's transaction updates both and DynamoDB refuses two operations on one item.
USAGE_KEY_PREFIX = "usage#"
COUNTERS = ("stored_bytes", "pending_bytes", "used_bytes", "media_count", "pending_count")


class QuotaExceeded(PayloadTooLarge):
    code = "quota_exceeded"


class Usage(ContractModel):
    """`GET /v1/me/usage` and `GET /v1/admin/users/{user_id}/usage`."""

    stored_bytes: int
    pending_bytes: int
    media_count: int
    quota_bytes: int


@dataclass(frozen=True)
class Share:
    """What one media counts for in its owner's usage."""

    stored_bytes: int = 0
    pending_bytes: int = 0
    media_count: int = 0
    pending_count: int = 0

    def minus(self, other: Share) -> Share:
        return Share(
            self.stored_bytes - other.stored_bytes,
            self.pending_bytes - other.pending_bytes,
            self.media_count - other.media_count,
            self.pending_count - other.pending_count,
        )

    @property
    def is_zero(self) -> bool:
        return self == Share()


NOTHING = Share()


def share_of(state: MediaState, size: int, *, holds_bytes: bool) -> Share:
    """Pending declared bytes while the client owes bytes or a proof; stored bytes (and one
    media) while the media holds verified bytes (a dedup hit counts for its owner too);
    nothing for a slot that failed or expired before its bytes arrived."""
    if state in PENDING_CLIENT:
        return Share(pending_bytes=size, pending_count=1)
    if holds_bytes:
        return Share(stored_bytes=size, media_count=1)
    return NOTHING


def usage_key(owner: str) -> dict[str, Any]:
    return {"bucket_key": {"S": USAGE_KEY_PREFIX + owner}}


def usage_update(table: str, owner: str, delta: Share, *, room: int | None = None) -> Any:
    """The transaction item adding `delta` to `owner`'s counters; with `room`, only while the
    bytes counted against the quota (`used_bytes` = stored + pending) stay within `room`
    before the addition (DynamoDB conditions cannot add, so the caller subtracts)."""
    values: dict[str, Any] = {
        ":stored_bytes": {"N": str(delta.stored_bytes)},
        ":pending_bytes": {"N": str(delta.pending_bytes)},
        ":used_bytes": {"N": str(delta.stored_bytes + delta.pending_bytes)},
        ":media_count": {"N": str(delta.media_count)},
        ":pending_count": {"N": str(delta.pending_count)},
    }
    update: dict[str, Any] = {
        "TableName": table,
        "Key": usage_key(owner),
        "UpdateExpression": "ADD " + ", ".join(f"{name} :{name}" for name in COUNTERS),
        "ExpressionAttributeValues": values,
    }
    if room is not None:
        update["ConditionExpression"] = "attribute_not_exists(used_bytes) OR used_bytes <= :room"
        values[":room"] = {"N": str(room)}
    return {"Update": update}


class UsageCounters:
    """Reads the per-user counter items (writes ride on the media transitions)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self.table = table

    async def usage(self, user_id: str, quota_bytes: int) -> Usage:
        response = await self._db.get_item(
            TableName=self.table, Key=usage_key(user_id), ConsistentRead=True
        )
        item = response.get("Item", {})

        def counter(name: str) -> int:
            raw = item.get(name, {}).get("N", "0")
            return max(0, int(raw))  # never negative, whatever an operator did by hand

        return Usage(
            stored_bytes=counter("stored_bytes"),
            pending_bytes=counter("pending_bytes"),
            media_count=counter("media_count"),
            quota_bytes=quota_bytes,
        )
