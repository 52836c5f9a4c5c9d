"""Make the embedded emulator's DynamoDB transactions atomic, as DynamoDB's are.

moto runs each request on its own thread. Its `TransactWriteItems` applies the items one by
one and, when a condition fails, rolls back by putting back a deep copy of each table taken
when the transaction began: any write another thread made meanwhile is silently undone, and
readers can see a transaction half applied. Ferry relies on transactions (a state change and
its reference count move together), so the emulator serialises DynamoDB item operations with
one lock. This changes the emulator only; LocalStack and AWS need nothing of the kind.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_ITEM_OPERATIONS = (
    "put_item",
    "get_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "transact_write_items",
)
_MARK = "_ferry_serialised"


def serialise_dynamodb_item_operations() -> None:
    """Idempotent: patching twice wraps once."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in _ITEM_OPERATIONS:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, _MARK, False):
            continue
        setattr(DynamoDBBackend, name, _serialised(original, lock))


def _serialised(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    setattr(wrapper, _MARK, True)
    return wrapper
