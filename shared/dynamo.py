"""Plain-Python ↔ DynamoDB attribute values, for the low-level client.

Numbers come back as Decimal; integral ones become int, others float. Floats go in as Decimal.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

# DynamoDB's limits on one batch write and one batch get.
BATCH_WRITE_ITEMS = 25
BATCH_GET_ITEMS = 100

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


async def batch_put(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), BATCH_WRITE_ITEMS):
        request: dict[str, Any] = {
            table: [
                {"PutRequest": {"Item": item}} for item in items[start : start + BATCH_WRITE_ITEMS]
            ]
        }
        while request:
            response = await dynamodb.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}


async def batch_delete(dynamodb: Any, table: str, keys: list[dict[str, Any]]) -> None:
    for start in range(0, len(keys), BATCH_WRITE_ITEMS):
        request: dict[str, Any] = {
            table: [
                {"DeleteRequest": {"Key": key}} for key in keys[start : start + BATCH_WRITE_ITEMS]
            ]
        }
        while request:
            response = await dynamodb.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}


async def batch_get(dynamodb: Any, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_ITEMS):
        request: dict[str, Any] = {
            table: {"Keys": keys[start : start + BATCH_GET_ITEMS], "ConsistentRead": True}
        }
        while request:
            response = await dynamodb.batch_get_item(RequestItems=request)
            found.extend(response.get("Responses", {}).get(table, []))
            request = response.get("UnprocessedKeys") or {}
    return found
