"""Which conversations reference which media, with each media's latest known state.

Two kinds of rows, keyed by media:
- (media, conversation): written in the same transaction as each message that references the
  media there, with `refs` = how many of that conversation's messages do; media events keep its
  state current, so stored messages read as fresh. It goes when the last of them is deleted.
- (media, `SUMMARY`): the media's total `references` across conversations, when it was first and
  last referenced, and `unreferenced_since` once a deletion took the count to zero (a sparse
  index lists those for the Media Service's sweeper: "unsent from that moment").
Every count moves in the transaction that stores or deletes the message, so they never drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.clock import iso
from shared.dynamo import batch_get, conditional, from_item, to_value
from shared.media_states import sources_of
from shared.models import MediaEvent, MediaState, Message, MessageMedia
from shared.resources import UNREFERENCED_INDEX

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef

# The sort key of a media's summary row: conversation ids start with "c_", so it never collides.
SUMMARY = "#"
# The one value of the sparse `unreferenced` index's hash key.
UNREFERENCED_SHARD = "u"


@dataclass(frozen=True)
class ReferenceSummary:
    media_id: str
    references: int
    first_referenced_at: datetime | None
    last_referenced_at: datetime | None
    unreferenced_since: datetime | None


def _summary(row: dict[str, Any]) -> ReferenceSummary:
    def when(name: str) -> datetime | None:
        value = row.get(name)
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    return ReferenceSummary(
        media_id=row["media_id"],
        references=int(row.get("references", 0)),
        first_referenced_at=when("first_referenced_at"),
        last_referenced_at=when("last_referenced_at"),
        unreferenced_since=when("unreferenced_since"),
    )


class MediaRefStore:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self.table = table

    def on_send(self, message: Message) -> list[TransactWriteItemTypeDef]:
        """Transaction items counting a new message's references (two per media)."""
        at = {"S": iso(message.created_at)}
        summary_key = {"conversation_id": {"S": SUMMARY}}
        items: list[TransactWriteItemTypeDef] = []
        for media in message.media:
            items.append(self._upsert(media, message.conversation_id))
            items.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": {"media_id": {"S": media.media_id}, **summary_key},
                        "UpdateExpression": (
                            "ADD #refs :one "
                            "SET first_referenced_at = if_not_exists(first_referenced_at, :at), "
                            "last_referenced_at = :at "
                            "REMOVE unreferenced_since, unreferenced_shard"
                        ),
                        "ExpressionAttributeNames": {"#refs": "references"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":at": at},
                    }
                }
            )
        return items

    def _upsert(self, media: MessageMedia, conversation_id: str) -> TransactWriteItemTypeDef:
        """The (media, conversation) row, one more reference; a later event's state is never
        undone."""
        return {
            "Update": {
                "TableName": self.table,
                "Key": {
                    "media_id": {"S": media.media_id},
                    "conversation_id": {"S": conversation_id},
                },
                "UpdateExpression": (
                    "SET #state = if_not_exists(#state, :state), "
                    "meta = if_not_exists(meta, :meta), media_type = :type ADD refs :one"
                ),
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {
                    ":state": {"S": media.state.value},
                    ":meta": to_value(media.meta),
                    ":type": {"S": media.media_type.value},
                    ":one": {"N": "1"},
                },
            }
        }

    async def on_delete(self, message: Message, *, now: datetime) -> list[TransactWriteItemTypeDef]:
        """Transaction items releasing a deleted message's references, conditional on the
        counts read here (a concurrent send or deletion makes the transaction fail: retry)."""
        if not message.media:
            return []
        keys = [
            {"media_id": {"S": media.media_id}, "conversation_id": {"S": sort_key}}
            for media in message.media
            for sort_key in (message.conversation_id, SUMMARY)
        ]
        rows = {
            (row["media_id"], row["conversation_id"]): row
            for row in map(from_item, await batch_get(self._db, self.table, keys))
        }
        items: list[TransactWriteItemTypeDef] = []
        for media in message.media:
            ref = rows.get((media.media_id, message.conversation_id))
            if ref is not None:
                items.append(self._release(ref, "refs", now))
            summary = rows.get((media.media_id, SUMMARY))
            if summary is not None:
                items.append(self._release(summary, "references", now))
        return items

    def _release(
        self, row: dict[str, Any], counter: str, now: datetime
    ) -> TransactWriteItemTypeDef:
        """One reference fewer on `row`: a conversation row goes at zero; the summary row
        stays and records since when nothing references the media."""
        key = {"media_id": {"S": row["media_id"]}, "conversation_id": {"S": row["conversation_id"]}}
        current = int(row.get(counter, 1))  # rows older than the counts held one reference
        names = {"#count": counter}
        if current > 1:
            return {
                "Update": {
                    "TableName": self.table,
                    "Key": key,
                    "UpdateExpression": "SET #count = :less",
                    "ConditionExpression": "#count = :current",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {
                        ":less": {"N": str(current - 1)},
                        ":current": {"N": str(current)},
                    },
                }
            }
        condition = "attribute_exists(media_id) AND (attribute_not_exists(#count) OR #count = :one)"
        if row["conversation_id"] != SUMMARY:
            return {
                "Delete": {
                    "TableName": self.table,
                    "Key": key,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            }
        return {
            "Update": {
                "TableName": self.table,
                "Key": key,
                "UpdateExpression": (
                    "SET #count = :zero, unreferenced_since = :now, unreferenced_shard = :u"
                ),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {
                    ":one": {"N": "1"},
                    ":zero": {"N": "0"},
                    ":now": {"S": iso(now)},
                    ":u": {"S": UNREFERENCED_SHARD},
                },
            }
        }

    async def summary(self, media_id: str) -> ReferenceSummary | None:
        response = await self._db.get_item(
            TableName=self.table,
            Key={"media_id": {"S": media_id}, "conversation_id": {"S": SUMMARY}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _summary(from_item(item)) if item else None

    async def unreferenced(self, *, before: datetime, limit: int) -> list[ReferenceSummary]:
        """Media whose references all went before `before`, oldest first (one index query)."""
        response = await self._db.query(
            TableName=self.table,
            IndexName=UNREFERENCED_INDEX,
            KeyConditionExpression="unreferenced_shard = :u AND unreferenced_since < :before",
            ExpressionAttributeValues={
                ":u": {"S": UNREFERENCED_SHARD},
                ":before": {"S": iso(before)},
            },
            Limit=limit,
        )
        return [_summary(from_item(item)) for item in response.get("Items", [])]

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
            conversations.extend(
                item["conversation_id"]["S"]
                for item in response["Items"]
                if item["conversation_id"]["S"] != SUMMARY
            )
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
        allowed = sources_of(event.state) | {event.state}
        if event.restored:
            allowed |= {MediaState.BLOCKED}  # a quarantine lifted (MediaEvent.restored)
        sources = sorted(state.value for state in allowed)
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
