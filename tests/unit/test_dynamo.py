"""`shared.dynamo`: conditional writes mapped to domain errors, batches that finish."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.exceptions import ClientError

from shared.dynamo import batch_delete, batch_get, batch_put, conditional

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient


class Refused(Exception):
    pass


def failed_condition() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ConditionalCheckFailedException", "Message": "no"}}, "PutItem"
    )


def cancelled(*reasons: str) -> ClientError:
    response: Any = {
        "Error": {"Code": "TransactionCanceledException", "Message": "no"},
        "CancellationReasons": [{"Code": reason} for reason in reasons],
    }
    return ClientError(response, "TransactWriteItems")


def test_a_failed_condition_becomes_the_domain_error() -> None:
    with pytest.raises(Refused) as raised, conditional(Refused("taken")):
        raise failed_condition()
    assert isinstance(raised.value.__cause__, ClientError)
    with pytest.raises(Refused), conditional(Refused("taken")):
        raise cancelled("None", "ConditionalCheckFailed")


def test_without_a_domain_error_a_failed_condition_is_swallowed_and_told() -> None:
    with conditional() as write:
        raise failed_condition()
    assert not write.applied
    with conditional() as write:
        pass
    assert write.applied


def test_other_errors_pass_through() -> None:
    throttled = ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "PutItem")
    with pytest.raises(ClientError), conditional(Refused("taken")):
        raise throttled
    with pytest.raises(ClientError), conditional():
        raise cancelled("TransactionConflict")
    with pytest.raises(KeyError), conditional():
        raise KeyError("x")


class Throttled:
    """A DynamoDB client whose batch calls leave their first item of a table unprocessed
    once per call, as throttling does."""

    def __init__(self, leftovers: int) -> None:
        self.leftovers = leftovers
        self.writes: list[list[dict[str, Any]]] = []
        self.items: dict[str, dict[str, Any]] = {}

    @property
    def client(self) -> DynamoDBClient:
        """This fake where code takes the real client. A cast: the fake has only the two batch
        calls, not the whole client the stubs describe."""
        return cast("DynamoDBClient", self)

    async def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        ((table, requests),) = RequestItems.items()
        self.writes.append(requests)
        if self.leftovers:
            self.leftovers -= 1
            applied, left = requests[1:], requests[:1]
        else:
            applied, left = requests, []
        for request in applied:
            if "PutRequest" in request:
                item = request["PutRequest"]["Item"]
                self.items[item["k"]["S"]] = item
            else:
                del self.items[request["DeleteRequest"]["Key"]["k"]["S"]]
        return {"UnprocessedItems": {table: left} if left else {}}

    async def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        ((table, request),) = RequestItems.items()
        keys = request["Keys"]
        if self.leftovers:
            self.leftovers -= 1
            found, left = keys[1:], keys[:1]
        else:
            found, left = keys, []
        unprocessed = {table: {**request, "Keys": left}} if left else {}
        rows = [self.items[key["k"]["S"]] for key in found]
        return {"Responses": {table: rows}, "UnprocessedKeys": unprocessed}


def item(number: int) -> dict[str, Any]:
    return {"k": {"S": f"k{number}"}}


async def test_batches_of_25_are_retried_until_nothing_is_left() -> None:
    dynamodb = Throttled(leftovers=3)
    await batch_put(dynamodb.client, "t", [item(n) for n in range(30)])
    assert len(dynamodb.items) == 30
    assert [len(requests) for requests in dynamodb.writes] == [25, 1, 1, 1, 5]

    dynamodb.leftovers = 2
    found = await batch_get(dynamodb.client, "t", [item(n) for n in range(30)])
    assert sorted(row["k"]["S"] for row in found) == sorted(f"k{n}" for n in range(30))

    dynamodb.leftovers = 1
    await batch_delete(dynamodb.client, "t", [item(n) for n in range(30)])
    assert dynamodb.items == {}
