"""Messages by (conversation, seq) and sends by (sender, client_msg_id).

A send is ONE transaction: the conversation's counter moves from the `last_seq` it was read at
to the next number (conditional), the message is put at that seq, the send's idempotency row is
put (conditional: first attempt wins) and the media references are counted. A crash before the
commit leaves nothing (no seq taken, no claim to expire); after it, everything. So `seq` has no
gaps by construction, and a retry after a crash goes straight through (or finds its outcome).

The idempotency row stays marked `unfanned` (a sparse index) until the pending deliveries are
written, so a send stored just before a crash is fanned out later: by its retry, or by the
repair loop (`unfanned_sends`).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from message_service.ids import idempotency_key
from message_service.media_refs import MediaRefStore
from shared.clock import iso
from shared.dynamo import batch_get, from_item, is_conditional_failure, to_item
from shared.models import DeletedMessage, Message
from shared.resources import UNFANNED_INDEX

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import TransactWriteItemTypeDef

# The one value of the sparse `unfanned` index's hash key: rows leave it within a send, so it
# never grows (a shard count can be added if sends ever outgrow one partition's throughput).
UNFANNED_SHARD = "u"
# Internal attributes of message rows (never part of the contract's shapes).
_INTERNAL = frozenset({"deleted_at", "released_media"})

StoredMessage = Message | DeletedMessage


@dataclass(frozen=True)
class SendRecord:
    conversation_id: str
    message_id: str
    seq: int
    fanned_out: bool


class SeqTaken(Exception):
    """Another send took the seq this attempt expected (or the conversation is gone)."""


class AlreadySent(Exception):
    """An attempt of the same (sender, client_msg_id) committed first."""


class Contended(Exception):
    """Transactions touching the same items kept colliding; the caller may retry."""


def _reasons(error: Exception) -> list[str | None]:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return []
    return [reason.get("Code") for reason in response.get("CancellationReasons", [])]


def _is_transaction_cancelled(error: Exception) -> bool:
    response = getattr(error, "response", None)
    return isinstance(response, dict) and (
        response.get("Error", {}).get("Code") == "TransactionCanceledException"
    )


def stored_message(row: dict[str, Any]) -> StoredMessage:
    """A message row as the contract shows it: the message, or its tombstone once deleted."""
    if row.get("deleted"):
        return DeletedMessage(
            message_id=row["message_id"],
            conversation_id=row["conversation_id"],
            seq=row["seq"],
            sender=row["sender"],
            created_at=row["created_at"],
        )
    return Message.model_validate({k: v for k, v in row.items() if k not in _INTERNAL})


class MessageStore:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        *,
        messages_table: str,
        idempotency_table: str,
        conversations_table: str,
        refs: MediaRefStore,
    ) -> None:
        self._db = dynamodb
        self._messages = messages_table
        self._idempotency = idempotency_table
        self._conversations = conversations_table
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
        if "message_id" not in row:
            # A claim row of the previous design (claim, then store): never finished. Treated
            # as absent, so the new transaction replaces it.
            return None
        return SendRecord(
            conversation_id=row["conversation_id"],
            message_id=row["message_id"],
            seq=int(row["seq"]),
            fanned_out=bool(row.get("fanned_out", False)),
        )

    async def last_seq(self, conversation_id: str) -> int | None:
        """The conversation's last seq (None: no such conversation)."""
        response = await self._db.get_item(
            TableName=self._conversations,
            Key={"conversation_id": {"S": conversation_id}},
            ConsistentRead=True,
            ProjectionExpression="last_seq",
        )
        item = response.get("Item")
        return int(item["last_seq"]["N"]) if item else None

    async def store(self, message: Message, *, expected_last_seq: int) -> None:
        """Take seq `expected_last_seq + 1` (= `message.seq`) and store the message with its
        idempotency outcome and media reference counts, atomically.

        `SeqTaken`: another message got that seq first (read again, retry). `AlreadySent`:
        this send committed already (replay it). `Contended`: a write conflict that outlived
        a few quick retries.
        """
        assert message.seq == expected_last_seq + 1
        stored_at = iso(message.created_at)
        key = idempotency_key(message.sender, message.client_msg_id)
        items: list[TransactWriteItemTypeDef] = [
            {
                "Update": {
                    "TableName": self._conversations,
                    "Key": {"conversation_id": {"S": message.conversation_id}},
                    "UpdateExpression": "SET last_seq = :next, last_message_at = :at",
                    "ConditionExpression": "last_seq = :expected",
                    "ExpressionAttributeValues": {
                        ":next": {"N": str(message.seq)},
                        ":expected": {"N": str(expected_last_seq)},
                        ":at": {"S": stored_at},
                    },
                }
            },
            {
                "Put": {
                    "TableName": self._messages,
                    "Item": to_item(message.model_dump(mode="json")),
                    "ConditionExpression": "attribute_not_exists(seq)",
                }
            },
            {
                "Put": {
                    "TableName": self._idempotency,
                    "Item": {
                        "idempotency_key": {"S": key},
                        "conversation_id": {"S": message.conversation_id},
                        "message_id": {"S": message.message_id},
                        "seq": {"N": str(message.seq)},
                        "stored_at": {"S": stored_at},
                        "unfanned_shard": {"S": UNFANNED_SHARD},
                        "fanned_out": {"BOOL": False},
                    },
                    # A claim row of the previous design (no message_id) may be replaced.
                    "ConditionExpression": (
                        "attribute_not_exists(idempotency_key) OR attribute_not_exists(message_id)"
                    ),
                }
            },
            *self._refs.on_send(message),
        ]
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                await self._db.transact_write_items(TransactItems=items)
                return
            except Exception as error:
                if not _is_transaction_cancelled(error):
                    raise
                reasons = _reasons(error)
                if len(reasons) > 2 and reasons[2] == "ConditionalCheckFailed":
                    raise AlreadySent(message.client_msg_id) from error
                if is_conditional_failure(error):
                    if reasons and reasons[0] == "ConditionalCheckFailed":
                        raise SeqTaken(message.conversation_id) from error
                    # A reference count moved under us: the caller reads it again.
                    raise Contended(message.conversation_id) from error
                if attempt == TRANSACTION_ATTEMPTS - 1:
                    raise Contended(message.conversation_id) from error
            # Another transaction touched one of our items at the same moment: try again.
            await asyncio.sleep(random.uniform(0.005, 0.02) * (attempt + 1))

    async def mark_fanned_out(self, sender: str, client_msg_id: str) -> None:
        await self._db.update_item(
            TableName=self._idempotency,
            Key={"idempotency_key": {"S": idempotency_key(sender, client_msg_id)}},
            UpdateExpression="SET fanned_out = :yes REMOVE unfanned_shard",
            ConditionExpression="attribute_exists(idempotency_key)",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )

    async def unfanned_sends(self, *, stored_before: datetime, limit: int) -> list[tuple[str, int]]:
        """(conversation, seq) of sends stored before `stored_before` and never fanned out:
        one query of a sparse index (rows leave it as soon as their fan-out is done)."""
        response = await self._db.query(
            TableName=self._idempotency,
            IndexName=UNFANNED_INDEX,
            KeyConditionExpression="unfanned_shard = :u AND stored_at < :before",
            ExpressionAttributeValues={
                ":u": {"S": UNFANNED_SHARD},
                ":before": {"S": iso(stored_before)},
            },
            Limit=limit,
        )
        keys = [item["idempotency_key"] for item in response.get("Items", [])]
        if not keys:
            return []
        rows = await batch_get(
            self._db, self._idempotency, [{"idempotency_key": key} for key in keys]
        )
        return [
            (row["conversation_id"], int(row["seq"]))
            for row in map(from_item, rows)
            if "message_id" in row and not row.get("fanned_out")
        ]

    # --- deleting -----------------------------------------------------------------------------

    def tombstone(self, message: Message, *, now: datetime) -> TransactWriteItemTypeDef:
        """The transaction item that turns a message into its tombstone (once: conditional)."""
        return {
            "Update": {
                "TableName": self._messages,
                "Key": {
                    "conversation_id": {"S": message.conversation_id},
                    "seq": {"N": str(message.seq)},
                },
                "UpdateExpression": (
                    "SET deleted = :yes, deleted_at = :now, released_media = :released "
                    "REMOVE #text, media"
                ),
                "ConditionExpression": "attribute_exists(seq) AND attribute_not_exists(deleted)",
                "ExpressionAttributeNames": {"#text": "text"},
                "ExpressionAttributeValues": {
                    ":yes": {"BOOL": True},
                    ":now": {"S": iso(now)},
                    # Which media lost a reference: the fan-out tells the Media Service.
                    ":released": {"L": [{"S": m.media_id} for m in message.media]},
                },
            }
        }

    def mark_unfanned(self, message: Message, *, now: datetime) -> TransactWriteItemTypeDef:
        """The transaction item that puts a send back in the repair index (its deletion must
        reach every device even if this process dies right after the commit)."""
        return {
            "Update": {
                "TableName": self._idempotency,
                "Key": {
                    "idempotency_key": {"S": idempotency_key(message.sender, message.client_msg_id)}
                },
                "UpdateExpression": "SET fanned_out = :no, unfanned_shard = :u, stored_at = :now",
                "ConditionExpression": "attribute_exists(idempotency_key)",
                "ExpressionAttributeValues": {
                    ":no": {"BOOL": False},
                    ":u": {"S": UNFANNED_SHARD},
                    ":now": {"S": iso(now)},
                },
            }
        }

    async def tombstone_details(self, message: DeletedMessage) -> tuple[str | None, list[str]]:
        """A tombstone's client_msg_id and the media it released (kept in its row, not shown)."""
        response = await self._db.get_item(
            TableName=self._messages,
            Key={"conversation_id": {"S": message.conversation_id}, "seq": {"N": str(message.seq)}},
            ConsistentRead=True,
            ProjectionExpression="client_msg_id, released_media",
        )
        row = from_item(response.get("Item", {}))
        client_msg_id = row.get("client_msg_id")
        released = row.get("released_media", [])
        return (client_msg_id if isinstance(client_msg_id, str) else None), list(released)

    async def write(self, items: list[TransactWriteItemTypeDef]) -> None:
        await self._db.transact_write_items(TransactItems=items)

    # --- reading ------------------------------------------------------------------------------

    async def get(self, conversation_id: str, seq: int) -> StoredMessage | None:
        response = await self._db.get_item(
            TableName=self._messages,
            Key={"conversation_id": {"S": conversation_id}, "seq": {"N": str(seq)}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return stored_message(from_item(item)) if item else None

    async def get_many(self, keys: list[tuple[str, int]]) -> list[StoredMessage]:
        """The messages at these (conversation, seq), in no particular order; missing skipped."""
        items = await batch_get(
            self._db,
            self._messages,
            [{"conversation_id": {"S": c}, "seq": {"N": str(s)}} for c, s in dict.fromkeys(keys)],
        )
        return [stored_message(from_item(item)) for item in items]

    async def page(self, conversation_id: str, *, after: int, limit: int) -> list[StoredMessage]:
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
        return [stored_message(from_item(item)) for item in response["Items"]]


TRANSACTION_ATTEMPTS = 5
