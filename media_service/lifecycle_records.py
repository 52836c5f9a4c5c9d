"""The conditional writes of media lifetime: schedule, retire, delete, hold.

Every write here is the first half of a change: the record (and the blob's counters) move in one
conditional write or transaction, and only the process whose write applied touches storage
afterwards. A process killed between the two leaves bytes no record accounts for, which the
orphan scan deletes; it never leaves a record pointing at deleted bytes.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any, cast

from shared.clock import iso, utcnow
from shared.dynamo import conditional, from_item, to_value
from shared.media_records import (
    OWNER_CREATED_INDEX,
    SWEEP_INDEX,
    BlobRecord,
    MediaRecord,
    MediaRecords,
    StaleTransition,
)
from shared.models import MediaState
from shared.usage import NOTHING

# The sweep index is partitioned so that no single DynamoDB partition takes every write.
SWEEP_SHARDS = 8
USER_HOLD_PREFIX = "hold#user#"
OBJECT_MARKER_PREFIX = "object#"
ORPHAN_CURSOR_KEY = "sweeper#orphans"
MULTIPART_CURSOR_KEY = "sweeper#multipart"

_NOT_HELD = (
    "(attribute_not_exists(legal_hold) OR legal_hold = :false) AND "
    "(attribute_not_exists(user_hold) OR user_hold = :false)"
)


def sweep_shard(media_id: str) -> str:
    return f"s{zlib.crc32(media_id.encode()) % SWEEP_SHARDS}"


def _key(media_id: str) -> dict[str, Any]:
    return {"media_id": {"S": media_id}}


class LifecycleRecords:
    """Lifetime writes on the Media Service's tables (same client and tables as MediaRecords)."""

    def __init__(self, records: MediaRecords) -> None:
        self.records = records
        self._db = records._db
        self.media_table = records.media_table
        self.blobs_table = records.blobs_table

    # --- the sweep index ---------------------------------------------------------------------

    async def due(
        self, shard: str, now: datetime, limit: int, start: dict[str, Any] | None
    ) -> tuple[list[MediaRecord], dict[str, Any] | None]:
        """One page of media due by `now` in one shard (a query on the sparse index)."""
        request: dict[str, Any] = {
            "TableName": self.media_table,
            "IndexName": SWEEP_INDEX,
            "KeyConditionExpression": "sweep_shard = :shard AND sweep_due <= :now",
            "ExpressionAttributeValues": {":shard": {"S": shard}, ":now": {"S": iso(now)}},
            "Limit": limit,
        }
        if start:
            request["ExclusiveStartKey"] = start
        response = await self._db.query(**request)
        records = [MediaRecord.model_validate(from_item(item)) for item in response["Items"]]
        return records, response.get("LastEvaluatedKey")

    async def schedule(
        self,
        record: MediaRecord,
        due: datetime | None,
        *,
        set_fields: dict[str, Any] | None = None,
    ) -> bool:
        """Set when the sweeper looks next (None: never, until something changes), if the
        record is still as read (same `updated_at`): a newer change reschedules itself."""
        fields = {k: v for k, v in (set_fields or {}).items() if v is not None}
        names = {"#u": "updated_at", "#d": "sweep_due", "#s": "sweep_shard"}
        values: dict[str, Any] = {":seen": {"S": iso(record.updated_at)}}
        sets = []
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"] = name
            values[f":f{i}"] = to_value(value)
            sets.append(f"#f{i} = :f{i}")
        if due is None:
            del names["#s"]
            expression = "REMOVE #d"
            if sets:
                expression = "SET " + ", ".join(sets) + " " + expression
        else:
            values[":due"] = {"S": iso(due)}
            values[":shard"] = {"S": sweep_shard(record.media_id)}
            expression = "SET " + ", ".join([*sets, "#d = :due", "#s = :shard"])
        with conditional() as write:
            await self._db.update_item(
                TableName=self.media_table,
                Key=_key(record.media_id),
                UpdateExpression=expression,
                ConditionExpression="#u = :seen",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        return write.applied

    async def wake(self, media_id: str, due: datetime, **fields: Any) -> bool:
        """Make a media due at `due` (a hold released, a reference gone), whatever its state
        (False: no such media)."""
        names = {"#d": "sweep_due", "#s": "sweep_shard"}
        values: dict[str, Any] = {
            ":due": {"S": iso(due)},
            ":shard": {"S": sweep_shard(media_id)},
        }
        sets = ["#d = :due", "#s = :shard"]
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"] = name
            values[f":f{i}"] = to_value(value)
            sets.append(f"#f{i} = :f{i}")
        with conditional() as write:
            await self._db.update_item(
                TableName=self.media_table,
                Key=_key(media_id),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(media_id)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        return write.applied

    # --- retention and deletion --------------------------------------------------------------

    def _guard(self, record: MediaRecord) -> tuple[str, dict[str, str], dict[str, Any]]:
        """Condition: still in the state read, and not held."""
        return (
            f"#state = :state AND {_NOT_HELD}",
            {"#state": "state"},
            {":state": {"S": record.state.value}, ":false": {"BOOL": False}},
        )

    def _blob_counts(self, blob_key: str, **deltas: int) -> dict[str, Any]:
        adds = ", ".join(f"{name} :{name}" for name in deltas)
        return {
            "Update": {
                "TableName": self.blobs_table,
                "Key": {"blob_key": {"S": blob_key}},
                "UpdateExpression": f"ADD {adds}",
                "ConditionExpression": "attribute_exists(blob_key)",
                "ExpressionAttributeValues": {
                    f":{name}": {"N": str(delta)} for name, delta in deltas.items()
                },
            }
        }

    async def retire_original(self, record: MediaRecord) -> MediaRecord:
        """The original's bytes leave this media (ready → expired); its blob reference becomes
        a derivatives-only one. StaleTransition if it changed, was retired or is held."""
        condition, names, values = self._guard(record)
        sets = ["original_retired = :true", "blob_ref = :false", "updated_at = :now"]
        values = {**values, ":true": {"BOOL": True}, ":now": {"S": iso(utcnow())}}
        if record.blob_ref:
            sets.append("derivatives_ref = :true")
        if record.state is MediaState.READY:
            sets.append("#state = :expired")
            values[":expired"] = {"S": MediaState.EXPIRED.value}
        update = {
            "TableName": self.media_table,
            "Key": _key(record.media_id),
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": f"{condition} AND "
            "(attribute_not_exists(original_retired) OR original_retired = :false)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        items: list[dict[str, Any]] = [{"Update": update}]
        if record.blob_ref:
            items.append(self._blob_counts(record.blob_key, refcount=-1, retired_refs=1))
        await self._transact(items, record.media_id)
        return await self._reread(record.media_id)

    async def retire_derivatives(self, record: MediaRecord) -> MediaRecord:
        condition, names, values = self._guard(record)
        values = {**values, ":true": {"BOOL": True}, ":now": {"S": iso(utcnow())}}
        update = {
            "TableName": self.media_table,
            "Key": _key(record.media_id),
            "UpdateExpression": (
                "SET derivatives_retired = :true, derivatives_ref = :false, updated_at = :now"
            ),
            "ConditionExpression": f"{condition} AND original_retired = :true AND "
            "(attribute_not_exists(derivatives_retired) OR derivatives_retired = :false)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        items: list[dict[str, Any]] = [{"Update": update}]
        if record.derivatives_ref:
            items.append(self._blob_counts(record.blob_key, retired_refs=-1))
        await self._transact(items, record.media_id)
        return await self._reread(record.media_id)

    async def delete(self, record: MediaRecord, blob: BlobRecord | None) -> None:
        """Delete a media row (not held, state as read), releasing what it held of its blob.

        If its key is the one the blob's bytes live at, a marker row keeps that object
        accounted for (the orphan scan looks for it) while other media still hold the blob.
        """
        condition, names, values = self._guard(record)
        items: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self.media_table,
                    "Key": _key(record.media_id),
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        if record.blob_ref:
            items.append(self._blob_counts(record.blob_key, refcount=-1))
        elif record.derivatives_ref:
            items.append(self._blob_counts(record.blob_key, retired_refs=-1))
        usage = self.records.usage_change(record, NOTHING)
        if usage is not None:
            items.append(dict(usage))  # the owner's usage counters, in the same transaction
        # Written whatever the count read before: a dedup partner may attach meanwhile, and a
        # marker left behind is removed with the blob's original (`drop_original`).
        if blob is not None and blob.object_key == record.object_key:
            items.append(
                {
                    "Put": {
                        "TableName": self.media_table,
                        "Item": {
                            "media_id": {"S": OBJECT_MARKER_PREFIX + record.object_key},
                            "blob": {"S": blob.blob_key},
                        },
                    }
                }
            )
        await self._transact(items, record.media_id)

    async def drop_original(self, blob: BlobRecord) -> bool:
        """Forget where a blob's original lives once nobody holds it (True: ours to delete).

        A new upload of the same bytes then registers its own key (`if_not_exists`)."""
        with conditional() as write:
            await self._db.update_item(
                TableName=self.blobs_table,
                Key={"blob_key": {"S": blob.blob_key}},
                UpdateExpression="REMOVE object_key, version_id",
                ConditionExpression="refcount <= :zero AND object_key = :key",
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":key": {"S": blob.object_key or ""},
                },
            )
        if write.applied and blob.object_key:
            await self.forget_marker(blob.object_key)
        return write.applied

    async def mark_owner_deleted(self, record: MediaRecord, now: datetime) -> None:
        """The owner deleted a held media: hidden from now on, kept until the hold goes."""
        with conditional(StaleTransition(f"{record.media_id} changed")):
            await self._db.update_item(
                TableName=self.media_table,
                Key=_key(record.media_id),
                UpdateExpression="SET owner_deleted_at = :now",
                ConditionExpression="attribute_exists(media_id)",
                ExpressionAttributeValues={":now": {"S": iso(now)}},
            )

    # --- legal holds -------------------------------------------------------------------------

    async def set_hold(
        self, media_id: str, *, flag: str, on: bool, reason: str | None
    ) -> MediaRecord:
        """Turn `legal_hold` or `user_hold` on or off (404-worthy StaleTransition if gone)."""
        names = {"#flag": flag}
        values: dict[str, Any] = {":on": {"BOOL": on}}
        expression = "SET #flag = :on"
        if reason is not None:
            expression += ", legal_hold_reason = :reason"
            values[":reason"] = {"S": reason}
        with conditional(StaleTransition(f"{media_id} is gone")):
            response = await self._db.update_item(
                TableName=self.media_table,
                Key=_key(media_id),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(media_id) AND attribute_exists(#state)",
                ExpressionAttributeNames={**names, "#state": "state"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        return MediaRecord.model_validate(from_item(response["Attributes"]))

    async def blob_holder(self, blob_key: str, media_id: str, *, on: bool) -> BlobRecord | None:
        """Add or remove `media_id` among the blob's held media (a set: repeats are harmless)."""
        with conditional() as write:
            response = await self._db.update_item(
                TableName=self.blobs_table,
                Key={"blob_key": {"S": blob_key}},
                UpdateExpression=f"{'ADD' if on else 'DELETE'} held_by :me",
                ConditionExpression="attribute_exists(blob_key)",
                ExpressionAttributeValues={":me": {"SS": [media_id]}},
                ReturnValues="ALL_NEW",
            )
        if not write.applied:
            return None
        return BlobRecord.model_validate(from_item(response["Attributes"]))

    async def user_hold(self, user_id: str) -> dict[str, Any] | None:
        response = await self._db.get_item(
            TableName=self.media_table,
            Key=_key(USER_HOLD_PREFIX + user_id),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return from_item(item) if item else None

    async def put_user_hold(self, user_id: str, reason: str, now: datetime) -> None:
        await self._db.put_item(
            TableName=self.media_table,
            Item={
                "media_id": {"S": USER_HOLD_PREFIX + user_id},
                "reason": {"S": reason},
                "since": {"S": iso(now)},
            },
        )

    async def delete_user_hold(self, user_id: str) -> None:
        await self._db.delete_item(TableName=self.media_table, Key=_key(USER_HOLD_PREFIX + user_id))

    async def owned_ids(self, owner: str) -> list[str]:
        """Every media id of `owner` (the owner-created index, page by page)."""
        ids: list[str] = []
        request: dict[str, Any] = {
            "TableName": self.media_table,
            "IndexName": OWNER_CREATED_INDEX,
            "KeyConditionExpression": "#o = :owner",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":owner": {"S": owner}},
        }
        while True:
            response = await self._db.query(**request)
            ids.extend(item["media_id"]["S"] for item in response["Items"])
            if "LastEvaluatedKey" not in response:
                return ids
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- markers and cursors -----------------------------------------------------------------

    async def marker_blob(self, object_key: str) -> str | None:
        response = await self._db.get_item(
            TableName=self.media_table,
            Key=_key(OBJECT_MARKER_PREFIX + object_key),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return str(item["blob"]["S"]) if item else None

    async def forget_marker(self, object_key: str) -> None:
        await self._db.delete_item(
            TableName=self.media_table, Key=_key(OBJECT_MARKER_PREFIX + object_key)
        )

    async def cursor(self, name: str) -> dict[str, str]:
        response = await self._db.get_item(
            TableName=self.media_table, Key=_key(name), ConsistentRead=True
        )
        item = from_item(response.get("Item") or {})
        item.pop("media_id", None)
        return {key: str(value) for key, value in item.items()}

    async def save_cursor(self, name: str, cursor: dict[str, str]) -> None:
        item = {"media_id": {"S": name}}
        item.update({key: {"S": value} for key, value in cursor.items() if value})
        await self._db.put_item(TableName=self.media_table, Item=item)

    # -----------------------------------------------------------------------------------------

    async def _reread(self, media_id: str) -> MediaRecord:
        record = await self.records.get(media_id)
        if record is None:
            raise StaleTransition(f"{media_id} vanished")
        return record

    async def _transact(self, items: list[dict[str, Any]], media_id: str) -> None:
        with conditional(StaleTransition(f"{media_id}: a guarded write did not apply")):
            # Built as plain dicts (the shapes are checked by DynamoDB, and by the tests).
            await self._db.transact_write_items(TransactItems=cast(Any, items))
