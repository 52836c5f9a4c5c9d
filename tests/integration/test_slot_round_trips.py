"""A slot's DynamoDB work against the emulator: new bytes cost one transaction, and its guards
refuse (handing back what they found, writing nothing) only when dedup can apply or the user
is held (media_service.slot_guards, issue 14 item 2)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from media_service.lifecycle_records import USER_HOLD_PREFIX
from media_service.slot_guards import (
    DedupPossible,
    UserHeld,
    no_dedup_guard,
    no_hold_guard,
)
from media_service.user_counters import SlotLimits, UserCounters
from shared import keys
from shared.aws import AwsClients
from shared.dynamo import to_item
from shared.media_records import BlobRecord
from shared.models import MediaState, MediaType, UploadRequest
from tests.integration.helpers import Fleet

LIMITS = SlotLimits(per_minute=600, max_pending=50)


class CountingDynamo:
    """The real client, counting the calls that go through it (round trips)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await method(*args, **kwargs)

        return counted


def _request(size: int = 4096, content_type: str = "image/jpeg") -> UploadRequest:
    return UploadRequest(
        content_type=content_type,
        size=size,
        sha256=hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
    )


def _blob(request: UploadRequest, **fields: Any) -> BlobRecord:
    document: dict[str, Any] = {
        "blob_key": keys.blob_key(MediaType.IMAGE.value, request.sha256),
        "sha256": request.sha256,
        "object_key": f"o/m_{secrets.token_hex(8)}",
        "size": request.size,
        "content_type": request.content_type,
        "media_type": MediaType.IMAGE,
        "refcount": 1,
        "first_media_id": "m_first",
        "created_at": datetime.now(UTC),
        "outcome": MediaState.READY,
        **fields,
    }
    return BlobRecord.model_validate(document)


class Slot:
    """One slot's transaction as the upload path writes it, with a stand-in row."""

    def __init__(self, fleet: Fleet, aws: AwsClients, owner: str) -> None:
        self.fleet, self.aws, self.owner = fleet, aws, owner
        self.db = CountingDynamo(aws.dynamodb)
        self.counters = UserCounters(self.db, fleet.resources.rate_limits_table)  # type: ignore[arg-type]
        self.row_key = f"test#{secrets.token_hex(6)}"

    async def take(self, request: UploadRequest) -> None:
        resources = self.fleet.resources

        async def never() -> int:
            raise AssertionError("the pending count is not needed below the limit")

        await self.counters.admit(
            self.owner,
            now=datetime.now(UTC),
            limits=LIMITS,
            count_pending=never,
            create={
                "TableName": resources.rate_limits_table,
                "Item": {"bucket_key": {"S": self.row_key}},
                "ConditionExpression": "attribute_not_exists(bucket_key)",
            },
            guards=[
                no_dedup_guard(
                    resources.blobs_table,
                    keys.blob_key(MediaType.IMAGE.value, request.sha256),
                    request,
                ),
                no_hold_guard(resources.media_table, self.owner),
            ],
        )

    async def row_written(self) -> bool:
        found = await self.aws.dynamodb.get_item(
            TableName=self.fleet.resources.rate_limits_table,
            Key={"bucket_key": {"S": self.row_key}},
            ConsistentRead=True,
        )
        return "Item" in found

    async def pending(self) -> int:
        found = await self.aws.dynamodb.get_item(
            TableName=self.fleet.resources.rate_limits_table,
            Key={"bucket_key": {"S": f"user#{self.owner}"}},
            ConsistentRead=True,
        )
        return int(found.get("Item", {}).get("pending", {}).get("N", "0"))


@pytest.fixture
def slot(fleet: Fleet, aws: AwsClients, user: Callable[..., str]) -> Slot:
    return Slot(fleet, aws, user())


async def _put_blob(fleet: Fleet, aws: AwsClients, blob: BlobRecord) -> None:
    await aws.dynamodb.put_item(
        TableName=fleet.resources.blobs_table,
        Item=to_item(blob.model_dump(mode="json", exclude_none=True)),
    )


async def test_new_bytes_take_a_slot_in_one_round_trip(slot: Slot) -> None:
    await slot.take(_request())

    assert slot.db.calls == ["transact_write_items"]
    assert await slot.row_written()
    assert await slot.pending() == 1


async def test_settled_bytes_refuse_with_the_blob_and_write_nothing(
    fleet: Fleet, aws: AwsClients, slot: Slot
) -> None:
    request = _request()
    blob = _blob(request)
    await _put_blob(fleet, aws, blob)

    with pytest.raises(DedupPossible) as found:
        await slot.take(request)

    # The cancelled transaction handed the blob back: no read was needed, nothing was written.
    assert found.value.blob == blob
    assert slot.db.calls == ["transact_write_items"]
    assert not await slot.row_written()
    assert await slot.pending() == 0


@pytest.mark.parametrize(
    "change",
    [
        {"outcome": MediaState.FAILED},
        {"outcome": None},
        {"refcount": 0},
        {"object_key": None},
        {"size": 4097},
        {"content_type": "image/png"},
    ],
    ids=["failed", "unsettled", "unreferenced", "retired", "other-size", "other-type"],
)
async def test_stored_bytes_that_cannot_be_shared_do_not_refuse(
    fleet: Fleet, aws: AwsClients, slot: Slot, change: dict[str, Any]
) -> None:
    request = _request()
    await _put_blob(fleet, aws, _blob(request, **change))

    await slot.take(request)

    assert slot.db.calls == ["transact_write_items"]
    assert await slot.row_written()


async def test_a_held_user_refuses_with_the_reason_and_writes_nothing(
    fleet: Fleet, aws: AwsClients, slot: Slot
) -> None:
    await aws.dynamodb.put_item(
        TableName=fleet.resources.media_table,
        Item={
            "media_id": {"S": USER_HOLD_PREFIX + slot.owner},
            "reason": {"S": "case 42"},
            "since": {"S": datetime.now(UTC).isoformat()},
        },
    )
    try:
        with pytest.raises(UserHeld) as found:
            await slot.take(_request())
    finally:
        await aws.dynamodb.delete_item(
            TableName=fleet.resources.media_table,
            Key={"media_id": {"S": USER_HOLD_PREFIX + slot.owner}},
        )

    assert found.value.reason == "case 42"
    assert not await slot.row_written()
    assert await slot.pending() == 0
