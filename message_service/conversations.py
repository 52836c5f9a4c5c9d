"""Conversations and membership (DynamoDB): the Message Service is the authority on who is in."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.clock import iso
from shared.dynamo import batch_get, batch_put, conditional
from shared.models import Conversation

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef

# DynamoDB's limit on one transaction.
TRANSACTION_ITEMS = 100


class ConversationMissing(Exception):
    """The conversation does not exist."""


class ConversationStore:
    def __init__(
        self, dynamodb: DynamoDBClient, *, conversations_table: str, members_table: str
    ) -> None:
        self._db = dynamodb
        self._conversations = conversations_table
        self._members = members_table

    async def create(self, conversation: Conversation, created_by: str) -> None:
        """The conversation row and its first members in one transaction (all or nothing)."""
        row: TransactWriteItemTypeDef = {
            "Put": {
                "TableName": self._conversations,
                "Item": {
                    "conversation_id": {"S": conversation.conversation_id},
                    "created_at": {"S": iso(conversation.created_at)},
                    "created_by": {"S": created_by},
                    "last_seq": {"N": "0"},
                    **({"title": {"S": conversation.title}} if conversation.title else {}),
                },
                "ConditionExpression": "attribute_not_exists(conversation_id)",
            }
        }
        items = [self._member_item(conversation, user) for user in conversation.members]
        first, rest = items[: TRANSACTION_ITEMS - 1], items[TRANSACTION_ITEMS - 1 :]
        joins: list[TransactWriteItemTypeDef] = [
            {"Put": {"TableName": self._members, "Item": item}} for item in first
        ]
        await self._db.transact_write_items(TransactItems=[row, *joins])
        # Large groups: the rest join right after (idempotent puts, retried until all land).
        await batch_put(self._db, self._members, rest)

    def _member_item(self, conversation: Conversation, user_id: str) -> dict[str, Any]:
        return {
            "conversation_id": {"S": conversation.conversation_id},
            "user_id": {"S": user_id},
            "joined_at": {"S": iso(conversation.created_at)},
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
        return Conversation(
            conversation_id=conversation_id,
            members=await self.members(conversation_id),
            title=item.get("title", {}).get("S"),
            created_at=datetime.fromisoformat(item["created_at"]["S"]),
        )

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
                Item={
                    "conversation_id": {"S": conversation_id},
                    "user_id": {"S": user_id},
                    "joined_at": {"S": iso(joined_at)},
                },
                # Adding someone already in changes nothing (their join time stays).
                ConditionExpression="attribute_not_exists(user_id)",
            )

    async def remove_member(self, conversation_id: str, user_id: str) -> None:
        await self._db.delete_item(
            TableName=self._members,
            Key={"conversation_id": {"S": conversation_id}, "user_id": {"S": user_id}},
        )

    async def allocate_seq(self, conversation_id: str) -> int:
        """The next seq of a conversation: one atomic increment, so concurrent sends never share
        a number and leave no gap."""
        with conditional(ConversationMissing(conversation_id)):
            response = await self._db.update_item(
                TableName=self._conversations,
                Key={"conversation_id": {"S": conversation_id}},
                UpdateExpression="ADD last_seq :one",
                ConditionExpression="attribute_exists(conversation_id)",
                ExpressionAttributeValues={":one": {"N": "1"}},
                ReturnValues="UPDATED_NEW",
            )
        return int(response["Attributes"]["last_seq"]["N"])
