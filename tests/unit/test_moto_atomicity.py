"""`devstack.moto_atomicity`: a failed transaction leaves every item it named as it was,
without copying whole tables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from devstack.moto_atomicity import serialise_dynamodb_item_operations


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    serialise_dynamodb_item_operations()
    with mock_aws():
        client = boto3.client(
            "dynamodb",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        client.create_table(
            TableName="plain",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.create_table(
            TableName="ranged",
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
        yield client


def test_a_failed_transaction_puts_back_every_item_it_named(dynamodb: Any) -> None:
    dynamodb.put_item(TableName="plain", Item={"k": {"S": "a"}, "x": {"N": "1"}})
    dynamodb.put_item(TableName="ranged", Item={"k": {"S": "a"}, "r": {"N": "1"}, "x": {"N": "1"}})
    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "plain",
                        "Key": {"k": {"S": "a"}},
                        "UpdateExpression": "SET x = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                {"Put": {"TableName": "plain", "Item": {"k": {"S": "new"}}}},
                {"Delete": {"TableName": "ranged", "Key": {"k": {"S": "a"}, "r": {"N": "1"}}}},
                {"Put": {"TableName": "ranged", "Item": {"k": {"S": "a"}, "r": {"N": "2"}}}},
                {
                    "ConditionCheck": {
                        "TableName": "plain",
                        "Key": {"k": {"S": "missing"}},
                        "ConditionExpression": "attribute_exists(k)",
                    }
                },
            ]
        )
    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"

    def get(table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = dynamodb.get_item(TableName=table, Key=key).get("Item")
        return found

    assert get("plain", {"k": {"S": "a"}}) == {"k": {"S": "a"}, "x": {"N": "1"}}
    assert get("plain", {"k": {"S": "new"}}) is None
    assert get("ranged", {"k": {"S": "a"}, "r": {"N": "1"}}) == {
        "k": {"S": "a"},
        "r": {"N": "1"},
        "x": {"N": "1"},
    }
    assert get("ranged", {"k": {"S": "a"}, "r": {"N": "2"}}) is None


def test_a_transaction_that_succeeds_applies_every_item(dynamodb: Any) -> None:
    dynamodb.put_item(TableName="plain", Item={"k": {"S": "a"}, "x": {"N": "1"}})
    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": "plain",
                    "Key": {"k": {"S": "a"}},
                    "UpdateExpression": "SET x = :two",
                    "ConditionExpression": "x = :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":two": {"N": "2"}},
                }
            },
            {"Put": {"TableName": "ranged", "Item": {"k": {"S": "b"}, "r": {"N": "1"}}}},
        ]
    )
    item = dynamodb.get_item(TableName="plain", Key={"k": {"S": "a"}})["Item"]
    assert item["x"] == {"N": "2"}
    assert "Item" in dynamodb.get_item(TableName="ranged", Key={"k": {"S": "b"}, "r": {"N": "1"}})
