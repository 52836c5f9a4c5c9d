"""Erasure of a user's media (right to erasure): every media they own that no legal hold keeps,
referenced by messages or not, with its bytes, and its blob's derivatives once nobody else's
media shares them (the reclaimer's reference counts decide).

Bounded batches: one page of the owner's index at a time. Safe to retry: each deletion is a
conditional write followed by storage deletes that tolerate what is already gone, so a rerun
finds only what is left and erases that.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from media_service.reclaim import Reclaimer
from shared.dynamo import from_item
from shared.media_records import OWNER_CREATED_INDEX, StaleTransition
from shared.models import ContractModel

if TYPE_CHECKING:
    from shared.media_records import MediaRecords

log = logging.getLogger("ferry.media.erasure")

BATCH = 25
# A media that changes under us (processing finished, a hold came) is read again this often.
ATTEMPTS = 3


class ErasureReport(ContractModel):
    """`DELETE /v1/admin/users/{user_id}/media` → 202."""

    deleted: int
    held: int


class Erasure:
    def __init__(self, *, records: MediaRecords, reclaimer: Reclaimer) -> None:
        self.records = records
        self.reclaimer = reclaimer

    async def erase_user(self, user_id: str) -> ErasureReport:
        deleted = held = 0
        request: dict[str, Any] = {
            "TableName": self.records.media_table,
            "IndexName": OWNER_CREATED_INDEX,
            "KeyConditionExpression": "#o = :owner",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":owner": {"S": user_id}},
            "Limit": BATCH,
        }
        while True:
            response = await self.records._db.query(**request)
            for item in response["Items"]:
                outcome = await self._erase(from_item(item)["media_id"])
                deleted += outcome == "deleted"
                held += outcome == "held"
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        log.info(
            "erased a user's media", extra={"user_id": user_id, "deleted": deleted, "held": held}
        )
        return ErasureReport(deleted=deleted, held=held)

    async def _erase(self, media_id: str) -> str:
        for _ in range(ATTEMPTS):
            record = await self.records.get(media_id)
            if record is None:
                return "gone"
            if record.held:
                return "held"
            try:
                await self.reclaimer.delete_media(record)
            except StaleTransition:
                continue  # it changed meanwhile (or a hold arrived): look again
            return "deleted"
        return _left(media_id)


def _left(media_id: str) -> str:
    # Still changing after several looks (a busy pipeline): a retry of the erasure takes it.
    log.warning(
        "media kept changing during erasure; left for a retry", extra={"media_id": media_id}
    )
    return "left"
