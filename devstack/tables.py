"""The fleet's DynamoDB tables, as data.

One list, `TABLES`, says for every table who owns it, why it exists and how it is keyed, so
that the bootstrap creates exactly these and `docs/` can be generated from the same source.
Every table bills per request: the fleet's load is bursty and small, and no capacity needs tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shared.media_records import OWNER_CREATED_INDEX, PENDING_INDEX, SWEEP_INDEX, WATCH_INDEX
from shared.moderation import MODERATION_INDEX
from shared.resources import (
    ACTIVITY_INDEX,
    UNFANNED_INDEX,
    UNREFERENCED_INDEX,
    ResourceNames,
)

AttributeType = Literal["S", "N", "B"]
Projection = Literal["ALL", "KEYS_ONLY"]


@dataclass(frozen=True, kw_only=True)
class KeyAttribute:
    name: str
    type: AttributeType = "S"


@dataclass(frozen=True, kw_only=True)
class IndexSpec:
    """A global secondary index."""

    name: str
    hash_key: KeyAttribute
    range_key: KeyAttribute | None = None
    projection: Projection = "ALL"
    purpose: str = ""


@dataclass(frozen=True, kw_only=True)
class TableSpec:
    # The `ResourceNames` property that names the table (so the prefix applies).
    resource: str
    owner: str
    purpose: str
    hash_key: KeyAttribute
    range_key: KeyAttribute | None = None
    indexes: tuple[IndexSpec, ...] = ()
    ttl_attribute: str | None = None

    def name(self, resources: ResourceNames) -> str:
        value = getattr(resources, self.resource)
        if not isinstance(value, str):
            raise TypeError(f"ResourceNames.{self.resource} is not a table name")
        return value


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        resource="media_table",
        owner="media_service",
        purpose="media records by id; the worker writes state changes as the service's back end",
        hash_key=KeyAttribute(name="media_id"),
        indexes=(
            IndexSpec(
                name=OWNER_CREATED_INDEX,
                hash_key=KeyAttribute(name="owner"),
                range_key=KeyAttribute(name="created_at"),
                projection="ALL",
                purpose="an owner's media by creation time (upload rate limit, listings)",
            ),
            IndexSpec(
                name=PENDING_INDEX,
                hash_key=KeyAttribute(name="pending_owner"),
                range_key=KeyAttribute(name="upload_expires_at"),
                projection="KEYS_ONLY",
                purpose="sparse: an owner's uploads still awaiting bytes, counted in one query",
            ),
            IndexSpec(
                name=SWEEP_INDEX,
                hash_key=KeyAttribute(name="sweep_shard"),
                range_key=KeyAttribute(name="sweep_due"),
                projection="ALL",
                purpose=(
                    "sparse: media the sweeper must look at by a time (one query per shard "
                    "per pass, never a scan); also holds, markers and cursors rows by key"
                ),
            ),
            IndexSpec(
                name=WATCH_INDEX,
                hash_key=KeyAttribute(name="watch"),
                range_key=KeyAttribute(name="watch_at"),
                projection="KEYS_ONLY",
                purpose=(
                    "sparse: media in a state the worker must move on (awaiting_upload, "
                    "uploaded, processing) by `{state}#{shard}`, oldest first (the reconciler)"
                ),
            ),
            IndexSpec(
                name=MODERATION_INDEX,
                hash_key=KeyAttribute(name="moderation"),
                range_key=KeyAttribute(name="moderated_at"),
                projection="ALL",
                purpose="sparse: media moderation blocked or flagged, newest first (admin list)",
            ),
        ),
    ),
    TableSpec(
        resource="blobs_table",
        owner="media_service",
        purpose=(
            "verified bytes by media type family and SHA-256 (`{family}/{sha256}`), with a "
            "reference count (deduplication; families never share a blob)"
        ),
        hash_key=KeyAttribute(name="blob_key"),
    ),
    TableSpec(
        resource="rate_limits_table",
        owner="media_service",
        purpose=(
            "one counter item per user (`user#<owner>`: upload slot rate, pending count) and "
            "one usage item per user (`usage#<owner>`: stored and pending bytes, media count)"
        ),
        hash_key=KeyAttribute(name="bucket_key"),
        ttl_attribute="expires_at",
    ),
    TableSpec(
        resource="audit_table",
        owner="media_service",
        purpose="every admin action in order: one stream sorted by time, paged with a cursor",
        hash_key=KeyAttribute(name="stream"),
        range_key=KeyAttribute(name="event_id"),
    ),
    TableSpec(
        resource="conversations_table",
        owner="message_service",
        purpose="conversations by id",
        hash_key=KeyAttribute(name="conversation_id"),
    ),
    TableSpec(
        resource="members_table",
        owner="message_service",
        purpose="membership both ways: members of a conversation, conversations of a user",
        hash_key=KeyAttribute(name="conversation_id"),
        range_key=KeyAttribute(name="user_id"),
        indexes=(
            IndexSpec(
                name="by-user",
                hash_key=KeyAttribute(name="user_id"),
                range_key=KeyAttribute(name="conversation_id"),
                projection="ALL",
                purpose="the conversations a user belongs to",
            ),
            IndexSpec(
                name=ACTIVITY_INDEX,
                hash_key=KeyAttribute(name="user_id"),
                range_key=KeyAttribute(name="last_message_at"),
                projection="ALL",
                purpose=(
                    "a user's conversations, most recent first (GET /v1/conversations); each "
                    "member's row carries its conversation's last_seq and last_message_at"
                ),
            ),
        ),
    ),
    TableSpec(
        resource="messages_table",
        owner="message_service",
        purpose="messages by (conversation, seq); seq rises by one per conversation",
        hash_key=KeyAttribute(name="conversation_id"),
        range_key=KeyAttribute(name="seq", type="N"),
    ),
    TableSpec(
        resource="idempotency_table",
        owner="message_service",
        purpose="sends by (sender, client_msg_id), so a replayed send stores nothing new",
        hash_key=KeyAttribute(name="idempotency_key"),
        indexes=(
            IndexSpec(
                name=UNFANNED_INDEX,
                hash_key=KeyAttribute(name="unfanned_shard"),
                range_key=KeyAttribute(name="stored_at"),
                projection="KEYS_ONLY",
                purpose=(
                    "sparse: sends stored but not yet fanned out (a crash in between); the "
                    "repair loop finds them without a scan"
                ),
            ),
        ),
    ),
    TableSpec(
        resource="pending_table",
        owner="message_service",
        purpose="deliveries still pending per device, pushed again on reconnect",
        hash_key=KeyAttribute(name="device_key"),
        range_key=KeyAttribute(name="pending_key"),
    ),
    TableSpec(
        resource="media_refs_table",
        owner="message_service",
        purpose=(
            "which conversations reference which media (read access to media), with the "
            "media's latest state so stored messages read current"
        ),
        hash_key=KeyAttribute(name="media_id"),
        range_key=KeyAttribute(name="conversation_id"),
        indexes=(
            IndexSpec(
                name=UNREFERENCED_INDEX,
                hash_key=KeyAttribute(name="unreferenced_shard"),
                range_key=KeyAttribute(name="unreferenced_since"),
                projection="ALL",
                purpose=(
                    "sparse: media whose last referencing message was deleted, by when (the "
                    "sweeper's unsent-media rule)"
                ),
            ),
        ),
    ),
    TableSpec(
        resource="message_rate_limits_table",
        owner="message_service",
        purpose=(
            "per-user token buckets (HTTP sends, conversation creation), shared by every instance"
        ),
        hash_key=KeyAttribute(name="bucket_key"),
        ttl_attribute="expires_at",
    ),
    TableSpec(
        resource="devices_table",
        owner="message_service",
        purpose=(
            "every device a user has used, plus one count row per user (MAX_DEVICES_PER_USER): "
            "who gets pending deliveries"
        ),
        hash_key=KeyAttribute(name="user_id"),
        range_key=KeyAttribute(name="device_id"),
    ),
    TableSpec(
        resource="connections_table",
        owner="gateway",
        purpose="which gateway holds which device; rows expire unless heartbeats renew them",
        hash_key=KeyAttribute(name="user_id"),
        range_key=KeyAttribute(name="device_id"),
        ttl_attribute="expires_at",
    ),
)


def _key_schema(hash_key: KeyAttribute, range_key: KeyAttribute | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key.name, "KeyType": "HASH"}]
    if range_key is not None:
        schema.append({"AttributeName": range_key.name, "KeyType": "RANGE"})
    return schema


def _attribute_definitions(spec: TableSpec) -> list[dict[str, str]]:
    """Every key attribute of the table and its indexes, once each (DynamoDB refuses repeats)."""
    keys = [spec.hash_key, spec.range_key]
    for index in spec.indexes:
        keys += [index.hash_key, index.range_key]
    types: dict[str, AttributeType] = {}
    for key in keys:
        if key is None:
            continue
        if types.setdefault(key.name, key.type) != key.type:
            raise ValueError(f"{spec.resource}: attribute {key.name} has two types")
    return [{"AttributeName": name, "AttributeType": kind} for name, kind in types.items()]


def create_table_request(spec: TableSpec, resources: ResourceNames) -> dict[str, Any]:
    """The `CreateTable` arguments of a table (TTL is a separate call: `UpdateTimeToLive`)."""
    request: dict[str, Any] = {
        "TableName": spec.name(resources),
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": _key_schema(spec.hash_key, spec.range_key),
        "AttributeDefinitions": _attribute_definitions(spec),
    }
    if spec.indexes:
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": _key_schema(index.hash_key, index.range_key),
                "Projection": {"ProjectionType": index.projection},
            }
            for index in spec.indexes
        ]
    return request
