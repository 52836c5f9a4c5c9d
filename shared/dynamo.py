"""Plain-Python ↔ DynamoDB attribute values, for the low-level client.

Numbers come back as Decimal; integral ones become int, others float. Floats go in as Decimal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient

# DynamoDB's limits on one batch write and one batch get.
BATCH_WRITE_ITEMS = 25
BATCH_GET_ITEMS = 100
# Leftovers of a batch (throttling) are retried after 50 ms, doubling up to 2 s, as AWS advises.
BACKOFF_FIRST_SECONDS = 0.05
BACKOFF_MAX_SECONDS = 2.0

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: _to_dynamo(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [_to_dynamo(item) for item in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_dynamo(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(item) for item in value]
    if isinstance(value, set):
        return {_from_dynamo(item) for item in value}
    return value


def to_item(document: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item from a dict; None values are left out (DynamoDB has no use for them)."""
    return {
        key: _serializer.serialize(_to_dynamo(value))
        for key, value in document.items()
        if value is not None
    }


def to_value(value: Any) -> dict[str, Any]:
    return dict(_serializer.serialize(_to_dynamo(value)))


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: _from_dynamo(_deserializer.deserialize(value)) for key, value in item.items()}


def is_transaction_conflict(error: Exception) -> bool:
    """A transaction cancelled only because another one touched the same item: retry it."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    if response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = [reason.get("Code") for reason in response.get("CancellationReasons", [])]
    return "TransactionConflict" in reasons and "ConditionalCheckFailed" not in reasons


def is_conditional_failure(error: Exception) -> bool:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    code = response.get("Error", {}).get("Code", "")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = response.get("CancellationReasons", [])
        return any(reason.get("Code") == "ConditionalCheckFailed" for reason in reasons)
    return False


class ConditionalWrite:
    """Around one conditional write or transaction (see `conditional`)."""

    def __init__(self, refusal: Exception | None) -> None:
        self._refusal = refusal
        # Whether the write's condition held; False only once a failure was swallowed.
        self.applied = True

    def __enter__(self) -> ConditionalWrite:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if not isinstance(error, Exception) or not is_conditional_failure(error):
            return False
        if self._refusal is not None:
            raise self._refusal from error
        self.applied = False
        return True


def conditional(refusal: Exception | None = None) -> ConditionalWrite:
    """`with conditional(DomainError(...)):` turns a failed condition into that domain error;
    `with conditional() as write:` swallows it and leaves `write.applied` False. Any other
    error passes through untouched."""
    return ConditionalWrite(refusal)


def _backoff(attempt: int) -> float:
    return float(min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2**attempt))


async def _with_leftovers(
    call: Callable[..., Awaitable[Mapping[str, Any]]], request: dict[str, Any], leftovers: str
) -> AsyncIterator[Mapping[str, Any]]:
    """Each response to a batch call, then to its leftovers (`leftovers` names them in the
    response), backing off exponentially, until nothing is left."""
    attempt = 0
    while request:
        if attempt:
            await asyncio.sleep(_backoff(attempt - 1))
        response = await call(RequestItems=request)
        yield response
        request = response.get(leftovers) or {}
        attempt += 1


async def batch_write(dynamodb: DynamoDBClient, table: str, requests: list[dict[str, Any]]) -> None:
    """Put or delete requests (`{"PutRequest": ...}`, `{"DeleteRequest": ...}`), 25 a call,
    until every one applied."""
    for start in range(0, len(requests), BATCH_WRITE_ITEMS):
        chunk = {table: requests[start : start + BATCH_WRITE_ITEMS]}
        async for _ in _with_leftovers(dynamodb.batch_write_item, chunk, "UnprocessedItems"):
            pass


async def batch_put(dynamodb: DynamoDBClient, table: str, items: list[dict[str, Any]]) -> None:
    await batch_write(dynamodb, table, [{"PutRequest": {"Item": item}} for item in items])


async def batch_delete(dynamodb: DynamoDBClient, table: str, keys: list[dict[str, Any]]) -> None:
    await batch_write(dynamodb, table, [{"DeleteRequest": {"Key": key}} for key in keys])


async def batch_get(
    dynamodb: DynamoDBClient, table: str, keys: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_ITEMS):
        chunk = {table: {"Keys": keys[start : start + BATCH_GET_ITEMS], "ConsistentRead": True}}
        async for response in _with_leftovers(dynamodb.batch_get_item, chunk, "UnprocessedKeys"):
            found.extend(response.get("Responses", {}).get(table, []))
    return found
