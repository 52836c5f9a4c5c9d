"""Per-device pending deliveries: written when a message is stored, cleared by `received` acks.

A device is known from its first connection on (the gateway fetches its pending then), so a
message reaches every device a member has ever used, including the sender's other devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from message_service.devices import COUNT_ROW
from message_service.ids import device_key, parse_message_id
from shared.clock import iso
from shared.dynamo import batch_delete, batch_put
from shared.models import DeletedMessage, Message

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


@dataclass(frozen=True)
class Pending:
    conversation_id: str
    seq: int


def delivery_order(messages: list[Message | DeletedMessage]) -> list[Message | DeletedMessage]:
    """Oldest first across conversations, and always in `seq` order within one (pure).

    Clocks of several service instances may disagree by a little; `seq` never does.
    """
    by_time = sorted(messages, key=lambda m: (m.created_at, m.conversation_id, m.seq))
    slots: dict[str, list[int]] = {}
    for position, message in enumerate(by_time):
        slots.setdefault(message.conversation_id, []).append(position)
    ordered: list[Message | DeletedMessage | None] = [None] * len(by_time)
    for conversation_id, positions in slots.items():
        in_seq = sorted(
            (m for m in by_time if m.conversation_id == conversation_id), key=lambda m: m.seq
        )
        for position, message in zip(positions, in_seq, strict=True):
            ordered[position] = message
    return [message for message in ordered if message is not None]


class DeliveryStore:
    def __init__(self, dynamodb: DynamoDBClient, *, pending_table: str, devices_table: str) -> None:
        self._db = dynamodb
        self._pending = pending_table
        self._devices = devices_table

    async def devices_of(self, user_ids: list[str]) -> list[tuple[str, str]]:
        devices: list[tuple[str, str]] = []
        for user_id in dict.fromkeys(user_ids):
            kwargs: dict[str, Any] = {
                "TableName": self._devices,
                "KeyConditionExpression": "user_id = :u",
                "ExpressionAttributeValues": {":u": {"S": user_id}},
            }
            while True:
                response = await self._db.query(**kwargs)
                devices.extend(
                    (user_id, item["device_id"]["S"])
                    for item in response["Items"]
                    if item["device_id"]["S"] != COUNT_ROW
                )
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return devices

    async def add(self, devices: list[tuple[str, str]], message: Message | DeletedMessage) -> None:
        await batch_put(
            self._db,
            self._pending,
            [
                {
                    "device_key": {"S": device_key(user_id, device_id)},
                    "pending_key": {"S": message.message_id},
                    "conversation_id": {"S": message.conversation_id},
                    "seq": {"N": str(message.seq)},
                    "created_at": {"S": iso(message.created_at)},
                }
                for user_id, device_id in devices
            ],
        )

    async def pending(self, user_id: str, device_id: str) -> list[Pending]:
        found: list[Pending] = []
        kwargs: dict[str, Any] = {
            "TableName": self._pending,
            "KeyConditionExpression": "device_key = :d",
            "ExpressionAttributeValues": {":d": {"S": device_key(user_id, device_id)}},
            "ConsistentRead": True,
        }
        while True:
            response = await self._db.query(**kwargs)
            found.extend(
                Pending(
                    conversation_id=item["conversation_id"]["S"],
                    seq=int(item["seq"]["N"]),
                )
                for item in response["Items"]
            )
            if "LastEvaluatedKey" not in response:
                return found
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    async def clear(self, user_id: str, device_id: str, message_ids: list[str]) -> None:
        valid = [value for value in dict.fromkeys(message_ids) if parse_message_id(value)]
        await batch_delete(
            self._db,
            self._pending,
            [
                {"device_key": {"S": device_key(user_id, device_id)}, "pending_key": {"S": value}}
                for value in valid
            ],
        )
