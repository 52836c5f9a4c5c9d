"""Conversations and membership (DynamoDB): the Message Service is the authority on who is in."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.clock import iso
from shared.dynamo import batch_get, batch_put, conditional, from_item
from shared.models import Conversation
from shared.resources import ACTIVITY_INDEX

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef

# DynamoDB's limit on one transaction.
TRANSACTION_ITEMS = 100
# Members' activity rows updated at once after a send.
TOUCH_CONCURRENCY = 16


class ConversationMissing(Exception):
    """The conversation does not exist."""


class ConversationExists(Exception):
    """A conversation with this id exists already (a direct conversation of the same pair)."""


class BadCursor(Exception):
    """A `before` cursor this service did not write."""


@dataclass(frozen=True)
class Activity:
    """A member's row in the activity index: one conversation of a user, as recent as it is."""

    conversation_id: str
    last_seq: int
    last_message_at: datetime


def encode_cursor(key: dict[str, Any]) -> str:
    """The activity index's LastEvaluatedKey as an opaque `before` cursor (pure)."""
    plain = {name: value["S"] for name, value in key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, sort_keys=True).encode()).decode()


def decode_cursor(cursor: str, user_id: str) -> dict[str, Any]:
    """The ExclusiveStartKey in a cursor; a cursor of another user's listing is refused."""
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as error:
        raise BadCursor(cursor) from error
    names = {"conversation_id", "user_id", "last_message_at"}
    if (
        not isinstance(plain, dict)
        or set(plain) != names
        or not all(isinstance(v, str) for v in plain.values())
        or plain["user_id"] != user_id
    ):
        raise BadCursor(cursor)
    return {name: {"S": value} for name, value in plain.items()}


class ConversationStore:
    def __init__(
        self, dynamodb: DynamoDBClient, *, conversations_table: str, members_table: str
    ) -> None:
        self._db = dynamodb
        self._conversations = conversations_table
        self._members = members_table

    async def create(self, conversation: Conversation, created_by: str) -> None:
        """The conversation row and its first members in one transaction (all or nothing).

        `ConversationExists` when the id is taken: direct conversations have an id derived from
        their pair, so this condition is what keeps them one per pair.
        """
        row: TransactWriteItemTypeDef = {
            "Put": {
                "TableName": self._conversations,
                "Item": {
                    "conversation_id": {"S": conversation.conversation_id},
                    "created_at": {"S": iso(conversation.created_at)},
                    "created_by": {"S": created_by},
                    "admins": {"L": [{"S": admin} for admin in conversation.admins]},
                    "direct": {"BOOL": conversation.direct},
                    "last_seq": {"N": "0"},
                    "last_message_at": {"S": iso(conversation.created_at)},
                    **({"title": {"S": conversation.title}} if conversation.title else {}),
                },
                "ConditionExpression": "attribute_not_exists(conversation_id)",
            }
        }
        items = [
            self._member_item(conversation.conversation_id, user, conversation.created_at)
            for user in conversation.members
        ]
        first, rest = items[: TRANSACTION_ITEMS - 1], items[TRANSACTION_ITEMS - 1 :]
        joins: list[TransactWriteItemTypeDef] = [
            {"Put": {"TableName": self._members, "Item": item}} for item in first
        ]
        with conditional(ConversationExists(conversation.conversation_id)):
            await self._db.transact_write_items(TransactItems=[row, *joins])
        # Large groups: the rest join right after (idempotent puts, retried until all land).
        await batch_put(self._db, self._members, rest)

    def _member_item(
        self, conversation_id: str, user_id: str, joined_at: datetime
    ) -> dict[str, Any]:
        return {
            "conversation_id": {"S": conversation_id},
            "user_id": {"S": user_id},
            "joined_at": {"S": iso(joined_at)},
            # In the activity index from the start; sends move it forward.
            "last_seq": {"N": "0"},
            "last_message_at": {"S": iso(joined_at)},
        }

    async def get(self, conversation_id: str) -> Conversation | None:
        response = await self._db.get_item(
            TableName=self._conversations,
            Key={"conversation_id": {"S": conversation_id}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return None
        return conversation_of(from_item(item), await self.members(conversation_id))

    async def rows(self, conversation_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Conversation rows by id (missing ones left out)."""
        keys = [{"conversation_id": {"S": c}} for c in dict.fromkeys(conversation_ids)]
        items = await batch_get(self._db, self._conversations, keys)
        return {row["conversation_id"]: row for row in map(from_item, items)}

    async def set_admins(self, conversation_id: str, admins: list[str]) -> None:
        await self._db.update_item(
            TableName=self._conversations,
            Key={"conversation_id": {"S": conversation_id}},
            UpdateExpression="SET admins = :admins",
            ConditionExpression="attribute_exists(conversation_id)",
            ExpressionAttributeValues={":admins": {"L": [{"S": a} for a in admins]}},
        )

    async def member_rows(self, conversation_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._members,
            "KeyConditionExpression": "conversation_id = :c",
            "ExpressionAttributeValues": {":c": {"S": conversation_id}},
            "ConsistentRead": True,
        }
        while True:
            response = await self._db.query(**kwargs)
            rows.extend(from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return rows
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    async def recent(
        self, user_id: str, *, limit: int, before: str | None
    ) -> tuple[list[Activity], str | None]:
        """A user's conversations, most recent first: one query of the activity index
        (no scan). The cursor is the index's own position, so pages never skip or repeat."""
        kwargs: dict[str, Any] = {
            "TableName": self._members,
            "IndexName": ACTIVITY_INDEX,
            "KeyConditionExpression": "user_id = :u",
            "ExpressionAttributeValues": {":u": {"S": user_id}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if before:
            kwargs["ExclusiveStartKey"] = decode_cursor(before, user_id)
        response = await self._db.query(**kwargs)
        found = [
            Activity(
                conversation_id=row["conversation_id"],
                last_seq=int(row.get("last_seq", 0)),
                last_message_at=datetime.fromisoformat(row["last_message_at"]),
            )
            for row in map(from_item, response.get("Items", []))
        ]
        last = response.get("LastEvaluatedKey")
        return found, (encode_cursor(last) if last and len(found) == limit else None)

    async def touch_activity(
        self, conversation_id: str, user_ids: list[str], *, seq: int, at: datetime
    ) -> None:
        """Move each member's activity row to this message (never back, never recreating the
        row of someone who left meanwhile). One write per member per message, the same order
        as the pending deliveries the send writes anyway."""

        async def touch(user_id: str) -> None:
            with conditional():
                await self._db.update_item(
                    TableName=self._members,
                    Key={"conversation_id": {"S": conversation_id}, "user_id": {"S": user_id}},
                    UpdateExpression="SET last_seq = :seq, last_message_at = :at",
                    ConditionExpression=(
                        "attribute_exists(user_id) AND "
                        "(attribute_not_exists(last_seq) OR last_seq < :seq)"
                    ),
                    ExpressionAttributeValues={
                        ":seq": {"N": str(seq)},
                        ":at": {"S": iso(at)},
                    },
                )

        for start in range(0, len(user_ids), TOUCH_CONCURRENCY):
            await asyncio.gather(*(touch(u) for u in user_ids[start : start + TOUCH_CONCURRENCY]))

    async def members(self, conversation_id: str) -> list[str]:
        users: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._members,
            "KeyConditionExpression": "conversation_id = :c",
            "ExpressionAttributeValues": {":c": {"S": conversation_id}},
            "ConsistentRead": True,
        }
        while True:
            response = await self._db.query(**kwargs)
            users.extend(item["user_id"]["S"] for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return sorted(users)
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    async def is_member(self, conversation_id: str, user_id: str) -> bool:
        response = await self._db.get_item(
            TableName=self._members,
            Key={"conversation_id": {"S": conversation_id}, "user_id": {"S": user_id}},
            ConsistentRead=True,
        )
        return "Item" in response

    async def memberships(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (conversation, user) pairs are memberships now."""
        keys = [{"conversation_id": {"S": c}, "user_id": {"S": u}} for c, u in dict.fromkeys(pairs)]
        items = await batch_get(self._db, self._members, keys)
        return {(item["conversation_id"]["S"], item["user_id"]["S"]) for item in items}

    async def add_member(self, conversation_id: str, user_id: str, joined_at: datetime) -> None:
        with conditional():
            await self._db.put_item(
                TableName=self._members,
                Item=self._member_item(conversation_id, user_id, joined_at),
                # Adding someone already in changes nothing (their join time stays).
                ConditionExpression="attribute_not_exists(user_id)",
            )

    async def remove_member(self, conversation_id: str, user_id: str) -> None:
        await self._db.delete_item(
            TableName=self._members,
            Key={"conversation_id": {"S": conversation_id}, "user_id": {"S": user_id}},
        )


def conversation_of(row: dict[str, Any], members: list[str]) -> Conversation:
    """A conversation row and its members as the contract shows them (pure)."""
    admins = row.get("admins")
    if admins is None:  # rows older than admins: the creator is the admin
        admins = [row["created_by"]] if row.get("created_by") else []
    return Conversation(
        conversation_id=row["conversation_id"],
        members=members,
        title=row.get("title"),
        created_at=datetime.fromisoformat(row["created_at"]),
        admins=sorted(admins),
        direct=bool(row.get("direct", False)),
    )
