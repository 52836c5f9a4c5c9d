"""The connection registry: which gateway instance holds which (user, device).

The gateway owns the table and writes it (register, heartbeat, deregister); the Message Service
reads it to push each frame to the instance that holds the device. Rows carry a TTL
(`expires_at`, epoch seconds) kept fresh by the gateway's heartbeat, so a gateway that dies
without deregistering stops receiving pushes once its rows expire; readers ignore expired rows
themselves, since DynamoDB's TTL deletion (and the emulator's lack of it) is not immediate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.dynamo import batch_put, conditional

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


@dataclass(frozen=True, slots=True)
class Connection:
    user_id: str
    device_id: str
    gateway_url: str
    connection_id: str
    expires_at: int


class ConnectionRegistry:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def register(self, connection: Connection) -> None:
        """The newest connection of a device wins: a reconnect elsewhere takes its row over."""
        await self._db.put_item(TableName=self._table, Item=_item(connection))

    async def register_many(self, connections: list[Connection]) -> None:
        """`register` for many devices in one call per 25 (puts are unconditional); each device
        at most once (DynamoDB refuses a batch that names a key twice)."""
        await batch_put(self._db, self._table, [_item(connection) for connection in connections])

    async def heartbeat(self, connection: Connection) -> bool:
        """Extend this connection's row; False when another connection took the device over."""
        with conditional() as write:
            await self._db.update_item(
                TableName=self._table,
                Key=_key(connection.user_id, connection.device_id),
                UpdateExpression="SET expires_at = :expires",
                ConditionExpression="connection_id = :id",
                ExpressionAttributeValues={
                    ":expires": {"N": str(connection.expires_at)},
                    ":id": {"S": connection.connection_id},
                },
            )
        return write.applied

    async def deregister(self, connection: Connection) -> None:
        """Remove the row only if it is still this connection's (not a newer reconnect's)."""
        with conditional():
            await self._db.delete_item(
                TableName=self._table,
                Key=_key(connection.user_id, connection.device_id),
                ConditionExpression="connection_id = :id",
                ExpressionAttributeValues={":id": {"S": connection.connection_id}},
            )

    async def online(self, user_ids: list[str], *, now: float | None = None) -> list[Connection]:
        """Every live connection of these users (expired rows are ignored)."""
        moment = time.time() if now is None else now
        found: list[Connection] = []
        for user_id in dict.fromkeys(user_ids):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "user_id = :user",
                "ExpressionAttributeValues": {":user": {"S": user_id}},
            }
            while True:
                response = await self._db.query(**kwargs)
                found.extend(
                    connection
                    for connection in map(_connection, response.get("Items", []))
                    if connection.expires_at > moment
                )
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found


def _key(user_id: str, device_id: str) -> dict[str, Any]:
    return {"user_id": {"S": user_id}, "device_id": {"S": device_id}}


def _item(connection: Connection) -> dict[str, Any]:
    return {
        **_key(connection.user_id, connection.device_id),
        "gateway_url": {"S": connection.gateway_url},
        "connection_id": {"S": connection.connection_id},
        "expires_at": {"N": str(connection.expires_at)},
    }


def _connection(item: dict[str, Any]) -> Connection:
    return Connection(
        user_id=item["user_id"]["S"],
        device_id=item["device_id"]["S"],
        gateway_url=item["gateway_url"]["S"],
        connection_id=item["connection_id"]["S"],
        expires_at=int(item["expires_at"]["N"]),
    )
