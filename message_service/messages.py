"""Messages by (conversation, seq) and sends by (sender, client_msg_id).

A send first claims its idempotency key, then takes a seq, then writes the message, the key's
outcome and the media references in one transaction: a replay finds the outcome and stores
nothing new, and a seq is only ever taken by a send that holds its claim.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from message_service.ids import idempotency_key
from message_service.media_refs import MediaRefStore
from shared.dynamo import (
    batch_get,
    conditional,
    from_item,
    is_transaction_conflict,
    to_item,
)
from shared.models import Message

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef


@dataclass(frozen=True)
class SendRecord:
    conversation_id: str
    claim_token: str
    claimed_at: float
    message_id: str | None = None
    seq: int | None = None
    fanned_out: bool = False


TRANSACTION_ATTEMPTS = 5


class ClaimLost(Exception):
    """Another attempt of the same send holds (or finished) the claim."""


class MessageStore:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        *,
        messages_table: str,
        idempotency_table: str,
        refs: MediaRefStore,
    ) -> None:
        self._db = dynamodb
        self._messages = messages_table
        self._idempotency = idempotency_table
        self._refs = refs

    # --- sends --------------------------------------------------------------------------------

    async def lookup(self, sender: str, client_msg_id: str) -> SendRecord | None:
        response = await self._db.get_item(
            TableName=self._idempotency,
            Key={"idempotency_key": {"S": idempotency_key(sender, client_msg_id)}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return None
        row = from_item(item)
        return SendRecord(
            conversation_id=row["conversation_id"],
            claim_token=row["claim_token"],
            claimed_at=float(row["claimed_at"]),
            message_id=row.get("message_id"),
            seq=row.get("seq"),
            fanned_out=bool(row.get("fanned_out", False)),
        )

    async def claim(
        self,
        sender: str,
        client_msg_id: str,
        *,
        conversation_id: str,
        token: str,
        now: float,
        stale_after: float,
    ) -> None:
        """Claim a send; a claim whose process died (unfinished and stale) may be taken over."""
        with conditional(ClaimLost(client_msg_id)):
            await self._db.put_item(
                TableName=self._idempotency,
                Item={
                    "idempotency_key": {"S": idempotency_key(sender, client_msg_id)},
                    "conversation_id": {"S": conversation_id},
                    "claim_token": {"S": token},
                    "claimed_at": {"N": repr(now)},
                },
                ConditionExpression=(
                    "attribute_not_exists(idempotency_key) OR "
                    "(attribute_not_exists(message_id) AND claimed_at < :stale)"
                ),
                ExpressionAttributeValues={":stale": {"N": repr(now - stale_after)}},
            )

    async def store(self, message: Message, *, claim_token: str) -> None:
        """The message, the send's outcome and the media references, atomically."""
        refs = {media.media_id: media for media in message.media}
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._messages,
                    "Item": to_item(message.model_dump(mode="json")),
                    "ConditionExpression": "attribute_not_exists(seq)",
                }
            },
            {
                "Update": {
                    "TableName": self._idempotency,
                    "Key": {
                        "idempotency_key": {
                            "S": idempotency_key(message.sender, message.client_msg_id)
                        }
                    },
                    "UpdateExpression": "SET message_id = :id, seq = :seq",
                    "ConditionExpression": (
                        "claim_token = :token AND attribute_not_exists(message_id)"
                    ),
                    "ExpressionAttributeValues": {
                        ":id": {"S": message.message_id},
                        ":seq": {"N": str(message.seq)},
                        ":token": {"S": claim_token},
                    },
                }
            },
            *(self._refs.upsert(media, message.conversation_id) for media in refs.values()),
        ]
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                with conditional(ClaimLost(message.client_msg_id)):
                    await self._db.transact_write_items(TransactItems=items)
                return
            except Exception as error:
                if not is_transaction_conflict(error) or attempt == TRANSACTION_ATTEMPTS - 1:
                    raise
            # Another send touched the same media reference at the same moment: the seq is
            # already ours, so retry rather than leave a gap.
            await asyncio.sleep(random.uniform(0.01, 0.05) * (attempt + 1))

    async def mark_fanned_out(self, sender: str, client_msg_id: str) -> None:
        await self._db.update_item(
            TableName=self._idempotency,
            Key={"idempotency_key": {"S": idempotency_key(sender, client_msg_id)}},
            UpdateExpression="SET fanned_out = :yes",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )

    # --- reading ------------------------------------------------------------------------------

    async def get_many(self, keys: list[tuple[str, int]]) -> list[Message]:
        """The messages at these (conversation, seq), in no particular order; missing skipped."""
        items = await batch_get(
            self._db,
            self._messages,
            [{"conversation_id": {"S": c}, "seq": {"N": str(s)}} for c, s in dict.fromkeys(keys)],
        )
        return [Message.model_validate(from_item(item)) for item in items]

    async def page(self, conversation_id: str, *, after: int, limit: int) -> list[Message]:
        response = await self._db.query(
            TableName=self._messages,
            KeyConditionExpression="conversation_id = :c AND seq > :after",
            ExpressionAttributeValues={
                ":c": {"S": conversation_id},
                ":after": {"N": str(after)},
            },
            ConsistentRead=True,
            Limit=limit,
        )
        return [Message.model_validate(from_item(item)) for item in response["Items"]]
