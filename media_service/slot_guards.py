"""What a slot's one transaction also checks, so that new bytes cost one DynamoDB round trip.

A single-upload slot used to read two items before its transaction: the blob (can these bytes
be deduplicated?) and the user's legal hold (must the new media be held?). Almost always
neither exists. Instead the transaction carries a `ConditionCheck` on each that holds only
while the common answer is true, with `ReturnValuesOnConditionCheckFailure=ALL_OLD`:

- the blob check fails only when dedup can apply (the same test as `deduplicable`), and the
  cancellation hands back the blob item, so the dedup slot needs no read either;
- the hold check fails only when the user is held, and hands back the hold (its reason).

Either refusal becomes an exception here (`DedupPossible`, `UserHeld`); the upload path then
writes the other kind of slot. The check and the write are one atomic step, so a blob or hold
that appears between a read and a write can no longer be missed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from media_service.lifecycle_records import USER_HOLD_PREFIX
from shared.dynamo import from_item
from shared.media_records import BlobRecord
from shared.models import MediaState, UploadRequest

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef

# Settled blobs whose outcome a deduplicated media may share (a failed one is never offered).
DEDUPLICABLE_OUTCOMES = frozenset({MediaState.READY, MediaState.BLOCKED})


@dataclass(frozen=True)
class Guard:
    """One more item of a slot's transaction whose refused condition means something other
    than the user's counter refusing: `refused(item)` is what to raise, from what the item
    held when it refused (None when it held nothing)."""

    item: TransactWriteItemTypeDef
    refused: Callable[[dict[str, Any] | None], Exception]


class DedupPossible(Exception):
    """These bytes are stored and settled: the slot is a dedup challenge."""

    def __init__(self, blob: BlobRecord) -> None:
        super().__init__(blob.blob_key)
        self.blob = blob


class UserHeld(Exception):
    """The user is under legal hold: the new media is held from its first moment."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def deduplicable(blob: BlobRecord, request: UploadRequest) -> bool:
    """Whether a slot for `request` may answer with a dedup challenge for `blob`."""
    return (
        blob.outcome in DEDUPLICABLE_OUTCOMES
        and blob.refcount > 0
        and blob.object_key is not None
        and blob.size == request.size
        and blob.content_type == request.content_type
    )


def no_dedup_guard(blobs_table: str, blob_key: str, request: UploadRequest) -> Guard:
    """Holds while `blob_key` cannot be deduplicated for `request` (`deduplicable`, as a
    condition: absent attributes compare false, so a missing blob passes)."""
    outcomes = sorted(state.value for state in DEDUPLICABLE_OUTCOMES)
    values: dict[str, Any] = {f":o{n}": {"S": outcome} for n, outcome in enumerate(outcomes)}
    values.update(
        {
            ":zero": {"N": "0"},
            ":size": {"N": str(request.size)},
            ":type": {"S": request.content_type},
        }
    )
    can_dedup = (
        f"outcome IN ({', '.join(f':o{n}' for n in range(len(outcomes)))}) AND refcount > :zero "
        "AND attribute_exists(object_key) AND #size = :size AND content_type = :type"
    )
    return Guard(
        item={
            "ConditionCheck": {
                "TableName": blobs_table,
                "Key": {"blob_key": {"S": blob_key}},
                "ConditionExpression": f"attribute_not_exists(blob_key) OR NOT ({can_dedup})",
                "ExpressionAttributeNames": {"#size": "size"},  # a reserved word
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
        refused=_dedup_possible,
    )


def _dedup_possible(item: dict[str, Any] | None) -> Exception:
    if not item:
        return RuntimeError("the blob check refused without the blob")
    return DedupPossible(BlobRecord.model_validate(from_item(item)))


def no_hold_guard(media_table: str, owner: str) -> Guard:
    """Holds while `owner` is not under legal hold."""
    return Guard(
        item={
            "ConditionCheck": {
                "TableName": media_table,
                "Key": {"media_id": {"S": USER_HOLD_PREFIX + owner}},
                "ConditionExpression": "attribute_not_exists(media_id)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
        refused=_user_held,
    )


def _user_held(item: dict[str, Any] | None) -> Exception:
    reason = from_item(item).get("reason", "") if item else ""
    return UserHeld(str(reason))


def hold_fields(reason: str | None) -> dict[str, object]:
    """The fields a new media of a held user (`reason`; None: not held) starts with."""
    if reason is None:
        return {}
    return {"user_hold": True, "legal_hold_reason": reason}
