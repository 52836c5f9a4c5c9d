"""Make the embedded emulator's DynamoDB transactions atomic, as DynamoDB's are.

moto runs each request on its own thread. Its `TransactWriteItems` applies the items one by
one and, when a condition fails, rolls back by putting back a deep copy of each table taken
when the transaction began: any write another thread made meanwhile is silently undone, and
readers can see a transaction half applied. Ferry relies on transactions (a state change and
its reference count move together), so the emulator serialises DynamoDB item operations with
one lock. This changes the emulator only; LocalStack and AWS need nothing of the kind.

That deep copy of every table a transaction names also made each transaction cost as much as
the tables hold (a few hundred items: tens of milliseconds, under the lock every other item
operation waits for), so a bench's later transactions were slower than its first. Under the
lock, a copy of just the items the transaction names is as good a backup: the tables are no
longer copied, and those items are put back when it fails.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable
from types import SimpleNamespace
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
    import moto.dynamodb.models as backend_module
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in _ITEM_OPERATIONS:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, _MARK, False):
            continue
        if name == "transact_write_items":
            original = _with_item_backups(original)
        setattr(DynamoDBBackend, name, _serialised(original, lock))
    # The backend module's `copy.deepcopy` is used on whole tables by transact_write_items only
    # (and on single items elsewhere): tables are handed back as they are.
    if not isinstance(getattr(backend_module, "copy", None), SimpleNamespace):
        setattr(  # noqa: B010 (a module's global, not an attribute mypy knows)
            backend_module, "copy", SimpleNamespace(deepcopy=_deepcopy_but_tables, copy=copy.copy)
        )


def _deepcopy_but_tables(value: Any, memo: dict[int, Any] | None = None) -> Any:
    from moto.dynamodb.models.table import Table

    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _with_item_backups(transact: Callable[..., Any]) -> Callable[..., Any]:
    """moto's transact_write_items, with a backup of the items it names (not of the tables):
    each put back as it was when the transaction fails."""

    @functools.wraps(transact)
    def wrapper(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
        backups = []
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = backend.get_table(op["TableName"])
                keys = op["Item"] if op_type == "Put" else op["Key"]
                hash_key, range_key = backend.get_keys_value(table, keys)
            except Exception:
                continue  # moto reports the malformed entry itself, having written nothing
            before = table.get_item(hash_key, range_key)
            backups.append((table, hash_key, range_key, copy.deepcopy(before)))
        try:
            return transact(backend, transact_items)
        except BaseException:
            for table, hash_key, range_key, before in reversed(backups):
                _restore(table, hash_key, range_key, before)
            raise

    return wrapper


def _restore(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    """Put `item` back under its key in a moto Table (None: no item there)."""
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
    elif item is None:
        table.items[hash_key].pop(range_key, None)
    else:
        table.items[hash_key][range_key] = item


def _serialised(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    setattr(wrapper, _MARK, True)
    return wrapper
