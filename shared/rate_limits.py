"""Token-bucket rate limits kept in DynamoDB, so every instance of a service shares them.

A bucket holds up to `limit` tokens and refills at `limit` per window; each request takes one.
Unlike a fixed window it never lets a burst straddle a boundary through, and unlike counting
the things created it survives their deletion. Writes are optimistic: a conditional put on the
version read, retried when another instance took a token meanwhile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.dynamo import conditional
from shared.token_bucket import tokens_at

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class BucketState:
    tokens: float
    updated_at: float  # epoch seconds


def refill(state: BucketState | None, *, now: float, capacity: int, per_second: float) -> float:
    """Tokens available at `now` (pure)."""
    if state is None:
        return float(capacity)
    return tokens_at(
        state.tokens, updated_at=state.updated_at, now=now, capacity=capacity, per_second=per_second
    )


def seconds_until_a_token(tokens: float, per_second: float) -> int:
    return max(1, math.ceil((1.0 - tokens) / per_second))


class RateLimitContention(Exception):
    """Too many instances raced for one bucket; the caller may treat it as limited."""


class RateLimiter:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table

    async def try_acquire(
        self, subject: str, *, limit: int, window_seconds: int, now: datetime
    ) -> int | None:
        """None when `subject` may go ahead (a token is taken); else seconds to wait."""
        per_second = limit / window_seconds
        moment = now.timestamp()
        for _ in range(MAX_ATTEMPTS):
            state = await self._read(subject)
            tokens = refill(state, now=moment, capacity=limit, per_second=per_second)
            if tokens < 1.0:
                return seconds_until_a_token(tokens, per_second)
            if await self._write(subject, state, tokens - 1.0, moment, window_seconds):
                return None
        raise RateLimitContention(subject)

    async def _read(self, subject: str) -> BucketState | None:
        response = await self._db.get_item(
            TableName=self._table, Key={"bucket_key": {"S": subject}}, ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            return None
        return BucketState(
            tokens=float(item["tokens"]["N"]), updated_at=float(item["updated_at"]["N"])
        )

    async def _write(
        self,
        subject: str,
        previous: BucketState | None,
        tokens: float,
        moment: float,
        window_seconds: int,
    ) -> bool:
        condition: dict[str, Any]
        if previous is None:
            condition = {"ConditionExpression": "attribute_not_exists(bucket_key)"}
        else:
            condition = {
                "ConditionExpression": "updated_at = :previous",
                "ExpressionAttributeValues": {":previous": {"N": repr(previous.updated_at)}},
            }
        with conditional() as write:
            await self._db.put_item(
                TableName=self._table,
                Item={
                    "bucket_key": {"S": subject},
                    "tokens": {"N": repr(tokens)},
                    "updated_at": {"N": repr(moment)},
                    # A full bucket needs no row: TTL removes idle ones.
                    "expires_at": {"N": str(int(moment) + 2 * window_seconds)},
                },
                **condition,
            )
        return write.applied
