"""`devstack.moto_atomicity`: a failed transaction leaves every item it named as it was,
without copying whole tables."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from devstack.moto_atomicity import serialise_dynamodb_item_operations


@pytest.fixture
def tables() -> Iterator[Tables]:
    serialise_dynamodb_item_operations()
    # Another test's in-process emulator may share moto's backends: names of this test's own.
    suffix = secrets.token_hex(4)
    with mock_aws():
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        client.create_table(
            TableName=f"plain-{suffix}",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.create_table(
            TableName=f"ranged-{suffix}",
            KeySchema=[
                {"AttributeName": "k", "KeyType": "HASH"},
                {"AttributeName": "r", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "k", "AttributeType": "S"},
                {"AttributeName": "r", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Tables(client, f"plain-{suffix}", f"ranged-{suffix}")


@dataclass(frozen=True)
class Tables:
    client: Any
    plain: str
    ranged: str


def test_a_failed_transaction_puts_back_every_item_it_named(tables: Tables) -> None:
    tables.client.put_item(TableName=tables.plain, Item={"k": {"S": "a"}, "x": {"N": "1"}})
    tables.client.put_item(
        TableName=tables.ranged, Item={"k": {"S": "a"}, "r": {"N": "1"}, "x": {"N": "1"}}
    )
    with pytest.raises(ClientError) as refused:
        tables.client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": tables.plain,
                        "Key": {"k": {"S": "a"}},
                        "UpdateExpression": "SET x = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                {"Put": {"TableName": tables.plain, "Item": {"k": {"S": "new"}}}},
                {"Delete": {"TableName": tables.ranged, "Key": {"k": {"S": "a"}, "r": {"N": "1"}}}},
                {"Put": {"TableName": tables.ranged, "Item": {"k": {"S": "a"}, "r": {"N": "2"}}}},
                {
                    "ConditionCheck": {
                        "TableName": tables.plain,
                        "Key": {"k": {"S": "missing"}},
                        "ConditionExpression": "attribute_exists(k)",
                    }
                },
            ]
        )
    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"

    def get(table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = tables.client.get_item(TableName=table, Key=key).get("Item")
        return found

    assert get(tables.plain, {"k": {"S": "a"}}) == {"k": {"S": "a"}, "x": {"N": "1"}}
    assert get(tables.plain, {"k": {"S": "new"}}) is None
    assert get(tables.ranged, {"k": {"S": "a"}, "r": {"N": "1"}}) == {
        "k": {"S": "a"},
        "r": {"N": "1"},
        "x": {"N": "1"},
    }
    assert get(tables.ranged, {"k": {"S": "a"}, "r": {"N": "2"}}) is None


def test_a_transaction_that_succeeds_applies_every_item(tables: Tables) -> None:
    tables.client.put_item(TableName=tables.plain, Item={"k": {"S": "a"}, "x": {"N": "1"}})
    tables.client.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": tables.plain,
                    "Key": {"k": {"S": "a"}},
                    "UpdateExpression": "SET x = :two",
                    "ConditionExpression": "x = :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":two": {"N": "2"}},
                }
            },
            {"Put": {"TableName": tables.ranged, "Item": {"k": {"S": "b"}, "r": {"N": "1"}}}},
        ]
    )
    item = tables.client.get_item(TableName=tables.plain, Key={"k": {"S": "a"}})["Item"]
    assert item["x"] == {"N": "2"}
    assert "Item" in tables.client.get_item(
        TableName=tables.ranged, Key={"k": {"S": "b"}, "r": {"N": "1"}}
    )
