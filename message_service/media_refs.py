"""Which conversations reference which media, with each media's latest known state.

A row is written in the same transaction as the first message that references the media in a
conversation; media events keep its state current, so stored messages read as fresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.dynamo import batch_get, conditional, from_item, to_value
from shared.media_states import sources_of
from shared.models import MediaEvent, MessageMedia

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef


class MediaRefStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self.table = table

    def upsert(self, media: MessageMedia, conversation_id: str) -> TransactWriteItemTypeDef:
        """A transaction item recording the reference; a later event's state is never undone."""
        return {
            "Update": {
                "TableName": self.table,
                "Key": {
                    "media_id": {"S": media.media_id},
                    "conversation_id": {"S": conversation_id},
                },
                "UpdateExpression": (
                    "SET #state = if_not_exists(#state, :state), "
                    "meta = if_not_exists(meta, :meta), media_type = :type"
                ),
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {
                    ":state": {"S": media.state.value},
                    ":meta": to_value(media.meta),
                    ":type": {"S": media.media_type.value},
                },
            }
        }

    async def conversations_of(self, media_id: str) -> list[str]:
        conversations: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "media_id = :m",
            "ExpressionAttributeValues": {":m": {"S": media_id}},
            "ProjectionExpression": "conversation_id",
        }
        while True:
            response = await self._db.query(**kwargs)
            conversations.extend(item["conversation_id"]["S"] for item in response["Items"])
            if "LastEvaluatedKey" not in response:
                return conversations
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    async def latest(
        self, pairs: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
        """(media, conversation) → (state, meta) as last recorded."""
        keys = [
            {"media_id": {"S": m}, "conversation_id": {"S": c}} for m, c in dict.fromkeys(pairs)
        ]
        rows = [from_item(item) for item in await batch_get(self._db, self.table, keys)]
        return {
            (row["media_id"], row["conversation_id"]): (row["state"], row.get("meta", {}))
            for row in rows
        }

    async def record_event(self, event: MediaEvent, conversation_id: str) -> bool:
        """Record a newer state; events may arrive out of order, and an older one (a state the
        recorded one cannot come from) changes nothing. True when it was recorded."""
        sources = sorted(state.value for state in sources_of(event.state) | {event.state})
        tokens = {f":from{i}": {"S": value} for i, value in enumerate(sources)}
        with conditional() as write:
            await self._db.update_item(
                TableName=self.table,
                Key={"media_id": {"S": event.media_id}, "conversation_id": {"S": conversation_id}},
                UpdateExpression="SET #state = :state, meta = :meta",
                ConditionExpression=(
                    f"attribute_exists(media_id) AND #state IN ({', '.join(tokens)})"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":state": {"S": event.state.value},
                    ":meta": to_value(event.meta),
                    **tokens,
                },
            )
        return write.applied
