"""A user's devices, at most `MAX_DEVICES_PER_USER` of them (the Message Service owns the count).

A device is admitted the first time one of its tokens is used (HTTP or WebSocket): its row and
the user's count row move together in one transaction, the count conditional on the maximum,
so two new devices at once can never both take the last place. `DELETE /v1/me/devices/{id}`
frees a place (and drops that device's pending deliveries).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from message_service.ids import device_key
from shared.clock import iso
from shared.dynamo import batch_delete, conditional

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

# The sort key of the user's count row: a device id from a token is printable, this is not.
COUNT_ROW = "\x1fcount"


class UnknownDevice(Exception):
    """No such device for this user."""


def _reasons(error: Exception) -> list[str | None]:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return []
    return [reason.get("Code") for reason in response.get("CancellationReasons", [])]


class DeviceStore:
    def __init__(self, dynamodb: DynamoDBClient, *, devices_table: str, pending_table: str) -> None:
        self._db = dynamodb
        self._devices = devices_table
        self._pending = pending_table

    async def admit(
        self, user_id: str, device_id: str, *, now: datetime, limit: int, unknown: bool = False
    ) -> bool:
        """Whether the device may be used: known already, or admitted now within `limit`.

        `unknown`: the caller has just seen that the device has no row (a failed `touch`), so
        the lookup is skipped; a row written meanwhile still counts as known.
        """
        if not unknown:
            response = await self._db.get_item(
                TableName=self._devices,
                Key={"user_id": {"S": user_id}, "device_id": {"S": device_id}},
                ConsistentRead=True,
            )
            if "Item" in response:
                return True
        try:
            await self._db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._devices,
                            "Key": {"user_id": {"S": user_id}, "device_id": {"S": COUNT_ROW}},
                            "UpdateExpression": "ADD devices :one",
                            "ConditionExpression": (
                                "attribute_not_exists(devices) OR devices < :limit"
                            ),
                            "ExpressionAttributeValues": {
                                ":one": {"N": "1"},
                                ":limit": {"N": str(limit)},
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._devices,
                            "Item": {
                                "user_id": {"S": user_id},
                                "device_id": {"S": device_id},
                                "first_seen": {"S": iso(now)},
                                "last_seen": {"S": iso(now)},
                            },
                            "ConditionExpression": "attribute_not_exists(device_id)",
                        }
                    },
                ]
            )
        except Exception as error:
            reasons = _reasons(error)
            if len(reasons) == 2 and reasons[1] == "ConditionalCheckFailed":
                return True  # admitted by a concurrent request of the same device
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False
            raise
        return True

    async def touch(self, user_id: str, device_id: str, now: datetime) -> bool:
        """Note when a known device last connected; False (nothing written) for a device that
        has no row, i.e. was never admitted."""
        with conditional() as write:
            await self._db.update_item(
                TableName=self._devices,
                Key={"user_id": {"S": user_id}, "device_id": {"S": device_id}},
                UpdateExpression="SET last_seen = :now",
                ConditionExpression="attribute_exists(device_id)",
                ExpressionAttributeValues={":now": {"S": iso(now)}},
            )
        return write.applied

    async def remove(self, user_id: str, device_id: str) -> None:
        """Forget a device (its place is free again) and what was pending for it."""
        with conditional(UnknownDevice(device_id)):
            await self._db.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self._devices,
                            "Key": {"user_id": {"S": user_id}, "device_id": {"S": device_id}},
                            "ConditionExpression": "attribute_exists(device_id)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._devices,
                            "Key": {"user_id": {"S": user_id}, "device_id": {"S": COUNT_ROW}},
                            "UpdateExpression": "ADD devices :less",
                            "ConditionExpression": "devices > :zero",
                            "ExpressionAttributeValues": {
                                ":less": {"N": "-1"},
                                ":zero": {"N": "0"},
                            },
                        }
                    },
                ]
            )
        await self._drop_pending(user_id, device_id)

    async def _drop_pending(self, user_id: str, device_id: str) -> None:
        kwargs: dict[str, Any] = {
            "TableName": self._pending,
            "KeyConditionExpression": "device_key = :d",
            "ExpressionAttributeValues": {":d": {"S": device_key(user_id, device_id)}},
            "ProjectionExpression": "device_key, pending_key",
        }
        while True:
            response = await self._db.query(**kwargs)
            await batch_delete(self._db, self._pending, response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
