"""The media and blob records, and the one store through which they change.

The Media Service owns these tables; the worker writes media rows as its back end. Every state
change is a conditional write built from the state machine, and every reference count moves in
the same transaction as the state change that justifies it, so retries and replays are harmless.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from shared import keys
from shared.clock import iso, utcnow
from shared.dynamo import conditional, from_item, to_item, to_value
from shared.media_states import PENDING_CLIENT, sources_of
from shared.models import ErrorDetail, MediaDocument, MediaInfo, MediaState, MediaType, Variant
from shared.moderation import MODERATION_INDEX
from shared.usage import NOTHING, QuotaExceeded, Share, share_of, usage_update

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        PutTypeDef,
        TransactWriteItemTypeDef,
        UpdateTypeDef,
    )

OWNER_CREATED_INDEX = "owner-created"
# The recipients' original (API.md "Privacy of originals"): the original without location and
# camera metadata, made losslessly during processing. Not listed in the media document: readers
# other than the owner download it as `original`, and the document shows them its hash and size.
CLEAN_ORIGINAL_VARIANT = "original_clean"
PENDING_INDEX = "pending-by-owner"
# Sparse: (sweep_shard, sweep_due) of media the sweeper must look at again (media_service.sweeper).
SWEEP_INDEX = "sweep-due"
# Sparse: media in a state the worker must still move on, by `watch` = "{state}#{shard}" and
# `watch_at` (the last transition, or the last heartbeat of a job working on it). The reconciler
# reads it oldest first, per state and shard, never scanning the table.
WATCH_INDEX = "watch-by-time"
WATCHED_STATES: frozenset[MediaState] = frozenset(
    {MediaState.AWAITING_UPLOAD, MediaState.UPLOADED, MediaState.PROCESSING}
)
# Keys per watched state, so no one index partition takes every slot's write.
WATCH_SHARDS = 8


def watch_key(state: MediaState, media_id: str, shard: int | None = None) -> str:
    """The `watch` index key of a media in `state` (`shard` given: that shard's key)."""
    if shard is None:
        shard = zlib.crc32(media_id.encode()) % WATCH_SHARDS
    return f"{state.value}#{shard}"


# Every stored time uses `iso`, so range conditions on index keys are exact.
Timestamp = Annotated[datetime, PlainSerializer(iso, return_type=str, when_used="json")]


class StaleTransition(Exception):
    """The record was not in a state from which the transition is allowed (or is gone)."""


class StoredVariant(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None
    # Set for `original_clean`, whose hash the media document shows to recipients.
    sha256: str | None = None
    key: str

    def public(self) -> Variant:
        return Variant(**self.model_dump(exclude={"key", "sha256"}))


class Challenge(BaseModel):
    """A proof-of-possession challenge: single use, short-lived."""

    model_config = ConfigDict(frozen=True)

    offset: int
    length: int
    nonce: str
    expires_at: Timestamp


class MediaRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    media_id: str
    owner: str
    state: MediaState
    media_type: MediaType
    content_type: str
    size: int
    sha256: str
    filename: str | None = None
    created_at: Timestamp
    updated_at: Timestamp
    upload_kind: Literal["single", "multipart", "dedup"]
    # Where the verified bytes are; for a fresh upload, the slot's key `o/{media_id}`.
    object_key: str
    version_id: str | None = None
    upload_id: str | None = None
    part_size: int | None = None
    part_count: int | None = None
    upload_expires_at: Timestamp | None = None
    # Sparse index key: present only while the upload is pending, so counting is one query.
    pending_owner: str | None = None
    challenge: Challenge | None = None
    # Counted in its blob's reference count: set by the same transaction that counts it (the
    # commit step, a dedup proof), cleared by the one that releases it (delete). A media that
    # fails after its bytes were committed keeps its reference until it is deleted.
    blob_ref: bool = False
    meta: dict[str, Any] = Field(default_factory=dict)
    variants: list[StoredVariant] = Field(default_factory=list)
    error: ErrorDetail | None = None
    request_id: str | None = None
    # Percent done of a long derivation; meaningful only while processing.
    progress: int | None = None
    # Derivation runs started and not ended in their process (a crash leaves its run counted).
    derive_runs: int = 0
    # How often the reconciler found the media stuck and sent it round again.
    reconciles: int = 0
    # Moderation (shared.moderation): the NSFW score (admins only) and, when moderation blocked
    # or flagged the media, the sparse index key `moderation` with its reason and time.
    nsfw_score: float | None = None
    moderation: str | None = None
    moderation_reason: str | None = None
    moderated_at: Timestamp | None = None
    # --- lifetime (media_service.sweeper, docs/lifecycle.md) ---
    # Sparse index `sweep-due` (shard, due time): when the sweeper should next look at this
    # media; absent when no rule can ever apply (a legal hold settled on storage).
    sweep_shard: str | None = None
    sweep_due: Timestamp | None = None
    # The last moment a message was known to reference it: the unsent TTL counts from here.
    last_referenced_at: Timestamp | None = None
    # Retention: the original's bytes retired (the blob reference became a derivatives-only
    # one, `derivatives_ref`), then the derivatives too.
    original_retired: bool = False
    derivatives_ref: bool = False
    derivatives_retired: bool = False
    # Legal hold, on this media (`legal_hold`) or through its owner's (`user_hold`).
    legal_hold: bool = False
    user_hold: bool = False
    legal_hold_reason: str | None = None
    # Deleted by its owner while held: hidden from everyone but admins, kept until released.
    owner_deleted_at: Timestamp | None = None

    # --- governance (media_service.quarantine, shared.usage) ---
    # Blocked by an admin: everyone (the owner too) sees `blocked` until restored; the state
    # underneath is kept, so restoring is removing these fields.
    quarantined_at: Timestamp | None = None
    quarantine_reason: str | None = None
    # Counted in its owner's usage counters since its slot was made (rows from before quotas
    # existed are not, and never move the counters).
    usage_counted: bool = False

    @property
    def held(self) -> bool:
        return self.legal_hold or self.user_hold

    @property
    def quarantined(self) -> bool:
        return self.quarantined_at is not None

    @property
    def visible_state(self) -> MediaState:
        """The state everyone is shown: `blocked` while quarantined."""
        return MediaState.BLOCKED if self.quarantined else self.state

    @property
    def visible_error(self) -> ErrorDetail | None:
        if self.quarantined:
            return ErrorDetail(code="quarantined", message="an administrator blocked this media")
        return self.error

    @property
    def usage_share(self) -> Share:
        if not self.usage_counted:
            return NOTHING
        # Verified bytes count until the media is deleted, retired or not.
        had_bytes = self.blob_ref or self.derivatives_ref or self.original_retired
        return share_of(self.state, self.size, holds_bytes=had_bytes)

    def document(self, reader: str | None = None) -> MediaDocument:
        """The media document as `reader` sees it (None: the owner): a reader other than the
        owner downloads the metadata-free copy as `original`, so sees its hash and size."""
        size, sha256 = self.size, self.sha256
        clean = self.clean_original()
        if reader is not None and reader != self.owner and clean is not None and clean.sha256:
            size, sha256 = clean.size, clean.sha256
        return MediaDocument(
            media_id=self.media_id,
            state=self.visible_state,
            media_type=self.media_type,
            content_type=self.content_type,
            size=size,
            sha256=sha256,
            created_at=self.created_at,
            filename=self.filename,
            meta=self.meta,
            variants=self.public_variants(),
            error=self.visible_error,
            progress=self.progress if self.visible_state is MediaState.PROCESSING else None,
        )

    def info(self) -> MediaInfo:
        """The internal view other services check a media against."""
        return MediaInfo(
            media_id=self.media_id,
            owner=self.owner,
            state=self.visible_state,
            media_type=self.media_type,
            meta=self.meta,
            variants=self.public_variants(),
        )

    def public_variants(self) -> list[Variant]:
        return [
            variant.public() for variant in self.variants if variant.name != CLEAN_ORIGINAL_VARIANT
        ]

    def clean_original(self) -> StoredVariant | None:
        return self.variant(CLEAN_ORIGINAL_VARIANT)

    def variant(self, name: str) -> StoredVariant | None:
        return next((variant for variant in self.variants if variant.name == name), None)

    @property
    def blob_key(self) -> str:
        """The blob these bytes are as this media's type family (`shared.keys.blob_key`)."""
        return keys.blob_key(self.media_type.value, self.sha256)


class BlobRecord(BaseModel):
    """Some verified bytes as one media type family (`blob_key`, `{family}/{sha256}`): where
    they live and how many media hold them. The same bytes declared as another family are
    another blob, so dedup and the shared outcome never cross media types."""

    model_config = ConfigDict(frozen=True)

    blob_key: str
    sha256: str
    # None once the original's bytes were retired by every media holding them.
    object_key: str | None = None
    version_id: str | None = None
    size: int
    content_type: str
    media_type: MediaType
    refcount: int
    # Media whose original was retired but whose derivatives (under the same blob) live on.
    retired_refs: int = 0
    # Media under legal hold that share these bytes: storage holds stay while any is left.
    held_by: list[str] = Field(default_factory=list)
    first_media_id: str
    created_at: Timestamp
    # Set once processing settled: a dedup hit copies this outcome instead of re-processing.
    outcome: MediaState | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    variants: list[StoredVariant] = Field(default_factory=list)
    # Why the outcome is failed or blocked (a dedup hit shows the same error code).
    error: ErrorDetail | None = None
    nsfw_score: float | None = None


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


class MediaRecords:
    """DynamoDB access for media and blob rows (low-level client, conditional writes)."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        *,
        media_table: str,
        blobs_table: str,
        usage_table: str | None = None,
    ) -> None:
        self._db = dynamodb
        self.media_table = media_table
        self.blobs_table = blobs_table
        # Where per-user usage counters live (None: not counted, e.g. in unit tests' worlds).
        self.usage_table = usage_table

    def usage_change(self, before: MediaRecord, after: Share) -> TransactWriteItemTypeDef | None:
        """The counter update moving `before`'s owner from its share to `after` (None: none)."""
        if self.usage_table is None or not before.usage_counted:
            return None
        delta = after.minus(before.usage_share)
        if delta.is_zero:
            return None
        item: TransactWriteItemTypeDef = usage_update(self.usage_table, before.owner, delta)
        return item

    # --- reads -----------------------------------------------------------------------------

    async def get(self, media_id: str) -> MediaRecord | None:
        response = await self._db.get_item(
            TableName=self.media_table, Key={"media_id": {"S": media_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return MediaRecord.model_validate(from_item(item)) if item else None

    async def get_blob(self, blob_key: str) -> BlobRecord | None:
        """The blob `{family}/{sha256}` (`MediaRecord.blob_key`), if some media committed it."""
        response = await self._db.get_item(
            TableName=self.blobs_table, Key={"blob_key": {"S": blob_key}}, ConsistentRead=True
        )
        item = response.get("Item")
        return BlobRecord.model_validate(from_item(item)) if item else None

    async def moderated(
        self, state: str, *, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[MediaRecord], dict[str, Any] | None]:
        """Media moderation `blocked` or `flagged`, newest first: one query on the sparse
        moderation index. Returns a page and the key to continue from (None: the last page)."""
        request: dict[str, Any] = {
            "TableName": self.media_table,
            "IndexName": MODERATION_INDEX,
            "KeyConditionExpression": "moderation = :state",
            "ExpressionAttributeValues": {":state": {"S": state}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if start:
            request["ExclusiveStartKey"] = start
        response = await self._db.query(**request)
        records = [MediaRecord.model_validate(from_item(item)) for item in response["Items"]]
        return records, response.get("LastEvaluatedKey")

    async def count_pending(self, owner: str, now: datetime, limit: int) -> int:
        """Uploads of `owner` still awaiting bytes whose slot has not expired (at most `limit`)."""
        response = await self._db.query(
            TableName=self.media_table,
            IndexName=PENDING_INDEX,
            KeyConditionExpression="pending_owner = :owner AND upload_expires_at > :now",
            ExpressionAttributeValues={":owner": {"S": owner}, ":now": {"S": iso(now)}},
            Select="COUNT",
            Limit=limit,
        )
        return int(response.get("Count", 0))

    # --- writes ----------------------------------------------------------------------------

    async def create(self, record: MediaRecord, *, quota_bytes: int | None = None) -> None:
        """Store a new media; with counting on, its pending bytes join its owner's usage in the
        same transaction, refused (`QuotaExceeded`) if they would pass `quota_bytes`."""
        if self.usage_table is None:
            await self._db.put_item(
                TableName=self.media_table,
                Item=to_item(_dump(record)),
                ConditionExpression="attribute_not_exists(media_id)",
            )
            return
        counted = record.model_copy(update={"usage_counted": True})
        share = counted.usage_share
        room = None if quota_bytes is None else quota_bytes - share.pending_bytes
        if room is not None and room < 0:
            raise QuotaExceeded(_quota_message(quota_bytes, record.size))
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self.media_table,
                    "Item": to_item(_dump(counted)),
                    "ConditionExpression": "attribute_not_exists(media_id)",
                }
            },
            usage_update(self.usage_table, record.owner, share, room=room),
        ]
        # A fresh random id never collides: a refused condition is the quota's.
        with conditional(QuotaExceeded(_quota_message(quota_bytes, record.size))):
            await self._db.transact_write_items(TransactItems=items)

    def counted_slot(
        self, record: MediaRecord, quota_bytes: int | None
    ) -> tuple[MediaRecord, TransactWriteItemTypeDef | None]:
        """The record as a slot stores it (counted in usage) and the usage update to write in
        the same transaction (None: counting is off); `QuotaExceeded` when it cannot fit."""
        if self.usage_table is None:
            return record, None
        counted = record.model_copy(update={"usage_counted": True})
        share = counted.usage_share
        room = None if quota_bytes is None else quota_bytes - share.pending_bytes
        if room is not None and room < 0:
            raise QuotaExceeded(_quota_message(quota_bytes, record.size))
        item: TransactWriteItemTypeDef = usage_update(
            self.usage_table, record.owner, share, room=room
        )
        return counted, item

    def quota_refusal(self, record: MediaRecord, quota_bytes: int | None) -> QuotaExceeded:
        return QuotaExceeded(_quota_message(quota_bytes, record.size))

    def create_request(self, record: MediaRecord) -> PutTypeDef:
        """The put `create` makes, for a caller that writes it in a transaction of its own."""
        item = _dump(record)
        if record.state in WATCHED_STATES:
            item["watch"] = watch_key(record.state, record.media_id)
            item["watch_at"] = iso(record.updated_at)
        return {
            "TableName": self.media_table,
            "Item": to_item(item),
            "ConditionExpression": "attribute_not_exists(media_id)",
        }

    def _transition_update(
        self,
        media_id: str,
        target: MediaState,
        *,
        set_fields: dict[str, Any] | None = None,
        remove_fields: tuple[str, ...] = (),
        only_from: frozenset[MediaState] | None = None,
    ) -> UpdateTypeDef:
        sources = sources_of(target) if only_from is None else only_from & sources_of(target)
        if not sources:
            raise ValueError(f"no state may move to {target}")
        # None means "leave as is": DynamoDB has no null worth storing.
        given = {key: value for key, value in (set_fields or {}).items() if value is not None}
        now = iso(utcnow())
        fields = {**given, "state": target.value, "updated_at": now}
        if target in WATCHED_STATES:
            fields.update(watch=watch_key(target, media_id), watch_at=now)
        else:
            remove_fields = (*remove_fields, "watch", "watch_at")
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": to_value(value) for i, value in enumerate(fields.values())}
        assignments = [f"#f{i} = :v{i}" for i in range(len(fields))]
        removals = []
        for j, name in enumerate(remove_fields):
            names[f"#r{j}"] = name
            removals.append(f"#r{j}")
        source_tokens = []
        for k, state in enumerate(sorted(sources)):
            values[f":s{k}"] = {"S": state.value}
            source_tokens.append(f":s{k}")
        names["#state_now"] = "state"
        expression = "SET " + ", ".join(assignments)
        if removals:
            expression += " REMOVE " + ", ".join(removals)
        return {
            "TableName": self.media_table,
            "Key": {"media_id": {"S": media_id}},
            "UpdateExpression": expression,
            "ConditionExpression": f"#state_now IN ({', '.join(source_tokens)})",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    async def transition(
        self,
        media_id: str,
        target: MediaState,
        *,
        set_fields: dict[str, Any] | None = None,
        remove_fields: tuple[str, ...] = (),
        only_from: frozenset[MediaState] | None = None,
    ) -> MediaRecord:
        """Move a media to `target` if the state machine allows it from its current state."""
        sources = sources_of(target) if only_from is None else only_from & sources_of(target)
        if self.usage_table is not None and sources & PENDING_CLIENT:
            # Leaving a pending state releases pending bytes: the counters move in the same
            # transaction, from the state read (states only move forward, so a race ends in a
            # refused condition, never a wrong count).
            before = await self.get(media_id)
            pending = before is not None and before.state in sources & PENDING_CLIENT
            if before is not None and pending and before.usage_counted:
                return await self._counted_transition(
                    before, target, set_fields=set_fields, remove_fields=remove_fields
                )
        update = self._transition_update(
            media_id,
            target,
            set_fields=set_fields,
            remove_fields=remove_fields,
            only_from=only_from,
        )
        with conditional(StaleTransition(f"{media_id} cannot move to {target}")):
            response = await self._db.update_item(**update, ReturnValues="ALL_NEW")
        return MediaRecord.model_validate(from_item(response["Attributes"]))

    async def _counted_transition(
        self,
        before: MediaRecord,
        target: MediaState,
        *,
        set_fields: dict[str, Any] | None,
        remove_fields: tuple[str, ...],
    ) -> MediaRecord:
        update = self._transition_update(
            before.media_id,
            target,
            set_fields=set_fields,
            remove_fields=remove_fields,
            only_from=frozenset({before.state}),
        )
        holds = (
            bool((set_fields or {}).get("blob_ref")) or before.blob_ref or before.derivatives_ref
        )
        change = self.usage_change(before, share_of(target, before.size, holds_bytes=holds))
        items: list[TransactWriteItemTypeDef] = [{"Update": update}]
        if change is not None:
            items.append(change)
        await self._transact(items, before.media_id)
        after = await self.get(before.media_id)
        if after is None:
            raise StaleTransition(f"{before.media_id} vanished during a transition")
        return after

    async def fail(
        self,
        media_id: str,
        code: str,
        message: str,
        *,
        only_from: frozenset[MediaState] | None = None,
    ) -> MediaRecord:
        """Fail a media from a live state (`only_from` narrows which); its blob reference, if
        any, stays with it until the media is deleted."""
        return await self.transition(
            media_id,
            MediaState.FAILED,
            set_fields={"error": {"code": code, "message": message}},
            remove_fields=("pending_owner", "challenge"),
            only_from=only_from,
        )

    def _release(self, blob_key: str) -> TransactWriteItemTypeDef:
        return {
            "Update": {
                "TableName": self.blobs_table,
                "Key": {"blob_key": {"S": blob_key}},
                "UpdateExpression": "ADD refcount :minus",
                "ConditionExpression": "attribute_exists(blob_key)",
                "ExpressionAttributeValues": {":minus": {"N": "-1"}},
            }
        }

    async def set_progress(self, media_id: str, percent: int) -> None:
        """Progress of a job still processing (a settled media ignores late reports)."""
        with conditional():
            await self._db.update_item(
                TableName=self.media_table,
                Key={"media_id": {"S": media_id}},
                UpdateExpression="SET progress = :p",
                ConditionExpression="#state = :processing",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":p": {"N": str(percent)},
                    ":processing": {"S": MediaState.PROCESSING.value},
                },
            )

    async def take_challenge(self, media_id: str) -> Challenge:
        """Remove and return a media's challenge: whoever takes it has its one try."""
        with conditional(StaleTransition(f"{media_id} has no open challenge")):
            response = await self._db.update_item(
                TableName=self.media_table,
                Key={"media_id": {"S": media_id}},
                UpdateExpression="REMOVE challenge",
                ConditionExpression="#state = :proof AND attribute_exists(challenge)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":proof": {"S": MediaState.AWAITING_PROOF.value}},
                ReturnValues="ALL_OLD",
            )
        return Challenge.model_validate(from_item(response["Attributes"])["challenge"])

    async def commit_upload(self, record: MediaRecord, *, version_id: str | None) -> MediaRecord:
        """awaiting_upload → uploaded, and the blob registered (or its count raised), atomically."""
        now = iso(utcnow())
        update = self._transition_update(
            record.media_id,
            MediaState.UPLOADED,
            set_fields={"version_id": version_id, "blob_ref": True},
            remove_fields=("pending_owner",),
            only_from=frozenset({MediaState.AWAITING_UPLOAD}),
        )
        blob_fields = {
            "sha256": record.sha256,
            "object_key": record.object_key,
            "version_id": version_id,
            "size": record.size,
            "content_type": record.content_type,
            "media_type": record.media_type.value,
            "first_media_id": record.media_id,
            "created_at": now,
        }
        blob_fields = {key: value for key, value in blob_fields.items() if value is not None}
        names = {f"#b{i}": key for i, key in enumerate(blob_fields)}
        values = {f":b{i}": to_value(value) for i, value in enumerate(blob_fields.values())}
        keep_first = ", ".join(f"#b{i} = if_not_exists(#b{i}, :b{i})" for i in range(len(names)))
        blob_update: UpdateTypeDef = {
            "TableName": self.blobs_table,
            "Key": {"blob_key": {"S": record.blob_key}},
            "UpdateExpression": f"SET {keep_first} ADD refcount :one",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {**values, ":one": {"N": "1"}},
        }
        items: list[TransactWriteItemTypeDef] = [{"Update": update}, {"Update": blob_update}]
        change = self.usage_change(
            record, share_of(MediaState.UPLOADED, record.size, holds_bytes=True)
        )
        if change is not None:
            items.append(change)
        await self._transact(items, record.media_id)
        committed = await self.get(record.media_id)
        if committed is None:
            raise StaleTransition(f"{record.media_id} vanished during commit")
        return committed

    async def settle_blob(
        self,
        blob_key: str,
        outcome: MediaState,
        meta: dict[str, Any],
        variants: list[StoredVariant],
        *,
        error: ErrorDetail | None = None,
        nsfw_score: float | None = None,
    ) -> None:
        """Record processing's outcome on the blob, so a later dedup hit can copy it (with the
        error code and NSFW score, when there are any)."""
        assignments = ["outcome = :outcome", "meta = :meta", "variants = :variants"]
        removals = []
        values = {
            ":outcome": {"S": outcome.value},
            ":meta": to_value(meta),
            ":variants": to_value([_dump(variant) for variant in variants]),
        }
        if error is not None:
            assignments.append("#error = :error")
            values[":error"] = to_value(error.model_dump(mode="json"))
        else:
            removals.append("#error")
        if nsfw_score is not None:
            assignments.append("nsfw_score = :score")
            values[":score"] = to_value(nsfw_score)
        else:
            removals.append("nsfw_score")
        expression = "SET " + ", ".join(assignments)
        if removals:
            expression += " REMOVE " + ", ".join(removals)
        await self._db.update_item(
            TableName=self.blobs_table,
            Key={"blob_key": {"S": blob_key}},
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(blob_key)",
            ExpressionAttributeNames={"#error": "error"},  # a reserved word in expressions
            ExpressionAttributeValues=values,
        )

    async def attach_to_blob(self, record: MediaRecord, blob: BlobRecord) -> MediaRecord:
        """awaiting_proof → the blob's outcome, sharing its bytes and derivatives, atomically."""
        if blob.outcome is None:
            raise StaleTransition(f"blob {blob.blob_key} has not settled")
        update = self._transition_update(
            record.media_id,
            blob.outcome,
            set_fields={
                "object_key": blob.object_key,
                "version_id": blob.version_id,
                "meta": blob.meta,
                "variants": [_dump(variant) for variant in blob.variants],
                "error": blob.error.model_dump(mode="json") if blob.error else None,
                "nsfw_score": blob.nsfw_score,
                "blob_ref": True,
            },
            remove_fields=("challenge", "pending_owner"),
            only_from=frozenset({MediaState.AWAITING_PROOF}),
        )
        blob_update: UpdateTypeDef = {
            "TableName": self.blobs_table,
            "Key": {"blob_key": {"S": blob.blob_key}},
            "UpdateExpression": "ADD refcount :one",
            "ConditionExpression": "attribute_exists(blob_key) AND refcount > :zero",
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":zero": {"N": "0"}},
        }
        items: list[TransactWriteItemTypeDef] = [{"Update": update}, {"Update": blob_update}]
        change = self.usage_change(record, share_of(blob.outcome, record.size, holds_bytes=True))
        if change is not None:
            items.append(change)
        await self._transact(items, record.media_id)
        attached = await self.get(record.media_id)
        if attached is None:
            raise StaleTransition(f"{record.media_id} vanished during dedup")
        return attached

    async def delete(self, record: MediaRecord) -> int | None:
        """Delete a media row; if it held a blob reference, release it in the same transaction.

        Returns the blob's remaining reference count, or None when no blob was held.
        """
        delete: TransactWriteItemTypeDef = {
            "Delete": {
                "TableName": self.media_table,
                "Key": {"media_id": {"S": record.media_id}},
                "ConditionExpression": "#state = :state",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": {":state": {"S": record.state.value}},
            }
        }
        change = self.usage_change(record, NOTHING)
        counted = [change] if change is not None else []
        if not record.blob_ref:
            await self._transact([delete, *counted], record.media_id)
            return None
        await self._transact([delete, self._release(record.blob_key), *counted], record.media_id)
        blob = await self.get_blob(record.blob_key)
        return blob.refcount if blob else 0

    async def forget_blob(self, blob_key: str) -> bool:
        """Delete a blob row nobody references any more (False if someone took it meanwhile)."""
        with conditional() as write:
            await self._db.delete_item(
                TableName=self.blobs_table,
                Key={"blob_key": {"S": blob_key}},
                ConditionExpression=(
                    "refcount <= :zero AND (attribute_not_exists(retired_refs) "
                    "OR retired_refs <= :zero)"
                ),
                ExpressionAttributeValues={":zero": {"N": "0"}},
            )
        return write.applied

    # --- what the worker keeps to leave nothing stuck -----------------------------------------

    async def start_run(self, media_id: str) -> int:
        """Count a derivation run starting; returns the runs not ended so far, this one included.

        Conditional on a state a run may start from: a settled media raises StaleTransition.
        """
        with conditional(StaleTransition(f"{media_id} is not waiting for derivation")):
            response = await self._db.update_item(
                TableName=self.media_table,
                Key={"media_id": {"S": media_id}},
                UpdateExpression="ADD derive_runs :one",
                ConditionExpression="#state IN (:uploaded, :processing)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":uploaded": {"S": MediaState.UPLOADED.value},
                    ":processing": {"S": MediaState.PROCESSING.value},
                },
                ReturnValues="UPDATED_NEW",
            )
        return int(response["Attributes"]["derive_runs"]["N"])

    async def end_run(self, media_id: str) -> None:
        """A run ended in its own process (not a crash): it no longer counts."""
        with conditional():
            await self._db.update_item(
                TableName=self.media_table,
                Key={"media_id": {"S": media_id}},
                UpdateExpression="ADD derive_runs :minus",
                ConditionExpression="derive_runs > :zero",
                ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}},
            )

    async def touch_watch(self, media_id: str, state: MediaState) -> None:
        """A job still working on a media: its `watch_at` moves on (no transition meanwhile)."""
        with conditional():
            await self._db.update_item(
                TableName=self.media_table,
                Key={"media_id": {"S": media_id}},
                UpdateExpression="SET watch_at = :now",
                ConditionExpression="#state = :state AND attribute_exists(watch)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":now": {"S": iso(utcnow())},
                    ":state": {"S": state.value},
                },
            )

    async def watched_before(
        self, state: MediaState, shard: int, before: datetime, limit: int
    ) -> list[tuple[str, str]]:
        """(media_id, watch_at) of media in `state` (one shard) not moved on since `before`."""
        response = await self._db.query(
            TableName=self.media_table,
            IndexName=WATCH_INDEX,
            KeyConditionExpression="watch = :watch AND watch_at < :before",
            ExpressionAttributeValues={
                ":watch": {"S": watch_key(state, "", shard)},
                ":before": {"S": iso(before)},
            },
            Limit=limit,
        )
        return [
            (item["media_id"]["S"], item["watch_at"]["S"]) for item in response.get("Items", [])
        ]

    async def claim_stuck(
        self, media_id: str, state: MediaState, watch_at: str, *, count: bool
    ) -> int | None:
        """Take a stuck media for one reconciliation: its `watch_at` moves to now, only if
        nobody moved it since `watch_at` was read (so one replica acts, once). Returns how
        often it was sent round (counted when `count`), or None when another got there first.
        """
        update = "SET watch_at = :now"
        values: dict[str, Any] = {
            ":now": {"S": iso(utcnow())},
            ":state": {"S": state.value},
            ":seen": {"S": watch_at},
        }
        if count:
            update += " ADD reconciles :one"
            values[":one"] = {"N": "1"}
        with conditional() as write:
            response = await self._db.update_item(
                TableName=self.media_table,
                Key={"media_id": {"S": media_id}},
                UpdateExpression=update,
                ConditionExpression="#state = :state AND watch_at = :seen",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        if not write.applied:
            return None
        return int(response["Attributes"].get("reconciles", {"N": "0"})["N"])

    async def _transact(self, items: list[TransactWriteItemTypeDef], media_id: str) -> None:
        with conditional(StaleTransition(f"{media_id}: a guarded write did not apply")):
            await self._db.transact_write_items(TransactItems=items)


def _quota_message(quota_bytes: int | None, size: int) -> str:
    return (
        f"this upload ({size} bytes) would pass your storage quota of {quota_bytes} bytes "
        "(stored plus pending uploads): delete some media first"
    )
