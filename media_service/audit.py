"""The audit log of admin actions: one append-only table, read in order with a cursor.

Every event goes into one partition (`stream = "admin"`) under a sort key that orders by time
(`event_id` = fixed-width UTC time, then a random tail so two events of one microsecond stay
apart), so `GET /v1/admin/audit?after=<event_id>` is one query. Admin actions are rare: one
partition is plenty, and reading them in order matters more than spreading writes.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from shared.clock import iso, utcnow
from shared.dynamo import from_item, to_item
from shared.models import ContractModel

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

STREAM = "admin"
MAX_PAGE = 500


class AuditEvent(ContractModel):
    event_id: str = Field(description="the event's place in the log: pass it as `after`")
    at: datetime
    actor: str
    action: str
    target: str
    reason: str | None = None


class AuditPage(ContractModel):
    """`GET /v1/admin/audit?after=&limit=`: events in the order they happened."""

    events: list[AuditEvent]
    next: Annotated[str | None, Field(description="`after` for the next page; null at the end")]


def new_event_id(at: datetime) -> str:
    return f"{iso(at)}#{secrets.token_hex(4)}"


class AuditLog:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self.table = table

    async def record(
        self, *, actor: str, action: str, target: str, reason: str | None = None
    ) -> AuditEvent:
        """Append one admin action (`action` like `media.quarantine`, `target` like
        `media/m_...` or `user/alice`). Call it after the action applied."""
        at = utcnow()
        event = AuditEvent(
            event_id=new_event_id(at),
            at=at,
            actor=actor,
            action=action,
            target=target,
            reason=reason,
        )
        item = {"stream": STREAM, **event.model_dump(mode="json", exclude_none=True)}
        await self._db.put_item(
            TableName=self.table,
            Item=to_item(item),
            ConditionExpression="attribute_not_exists(event_id)",
        )
        return event

    async def page(self, *, after: str | None, limit: int) -> AuditPage:
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#stream = :stream",
            "ExpressionAttributeNames": {"#stream": "stream"},
            "ExpressionAttributeValues": {":stream": {"S": STREAM}},
            "Limit": min(limit, MAX_PAGE),
            "ConsistentRead": True,
        }
        if after:
            request["ExclusiveStartKey"] = {"stream": {"S": STREAM}, "event_id": {"S": after}}
        response = await self._db.query(**request)
        events = []
        for item in response.get("Items", []):
            row = from_item(item)
            row.pop("stream", None)
            events.append(AuditEvent.model_validate(row))
        more = "LastEvaluatedKey" in response and events
        return AuditPage(events=events, next=events[-1].event_id if more else None)
