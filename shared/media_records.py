"""The media and blob records, and the one store through which they change.

The Media Service owns these tables; the worker writes media rows as its back end. Every state
change is a conditional write built from the state machine, and every reference count moves in
the same transaction as the state change that justifies it, so retries and replays are harmless.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from shared import keys
from shared.clock import iso, utcnow
from shared.dynamo import conditional, from_item, to_item, to_value
from shared.media_states import sources_of
from shared.models import ErrorDetail, MediaDocument, MediaInfo, MediaState, MediaType, Variant
from shared.moderation import MODERATION_INDEX

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

    @property
    def held(self) -> bool:
        return self.legal_hold or self.user_hold

    def document(self, reader: str | None = None) -> MediaDocument:
        """The media document as `reader` sees it (None: the owner): a reader other than the
        owner downloads the metadata-free copy as `original`, so sees its hash and size."""
        size, sha256 = self.size, self.sha256
        clean = self.clean_original()
        if reader is not None and reader != self.owner and clean is not None and clean.sha256:
            size, sha256 = clean.size, clean.sha256
        return MediaDocument(
            media_id=self.media_id,
            state=self.state,
            media_type=self.media_type,
            content_type=self.content_type,
            size=size,
            sha256=sha256,
            created_at=self.created_at,
            filename=self.filename,
            meta=self.meta,
            variants=self.public_variants(),
            error=self.error,
            progress=self.progress if self.state is MediaState.PROCESSING else None,
        )

    def info(self) -> MediaInfo:
        """The internal view other services check a media against."""
        return MediaInfo(
            media_id=self.media_id,
            owner=self.owner,
            state=self.state,
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

    def __init__(self, dynamodb: DynamoDBClient, *, media_table: str, blobs_table: str) -> None:
        self._db = dynamodb
        self.media_table = media_table
        self.blobs_table = blobs_table

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

    async def create(self, record: MediaRecord) -> None:
        await self._db.put_item(**self.create_request(record))

    def create_request(self, record: MediaRecord) -> PutTypeDef:
        """The put `create` makes, for a caller that writes it in a transaction of its own."""
        return {
            "TableName": self.media_table,
            "Item": to_item(_dump(record)),
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
        fields = {**given, "state": target.value, "updated_at": iso(utcnow())}
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
        await self._transact([{"Update": update}, {"Update": blob_update}], record.media_id)
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
        await self._transact([{"Update": update}, {"Update": blob_update}], record.media_id)
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
        if not record.blob_ref:
            await self._transact([delete], record.media_id)
            return None
        await self._transact([delete, self._release(record.blob_key)], record.media_id)
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

    async def _transact(self, items: list[TransactWriteItemTypeDef], media_id: str) -> None:
        with conditional(StaleTransition(f"{media_id}: a guarded write did not apply")):
            await self._db.transact_write_items(TransactItems=items)
