"""The upload lifecycle, independent of HTTP: slots, dedup proofs, multipart sessions, deletion.

The bytes never pass through here: a slot names where the client puts them, the worker's
commit step verifies what arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from media_service.lifecycle_records import sweep_shard
from media_service.metrics import counting_refusals
from media_service.parts import MediaParts, UsesMediaParts
from media_service.planning import (
    MultipartPlan,
    new_challenge,
    plan_upload,
    proof_matches,
)
from media_service.retention import Policy, next_due
from media_service.slot_guards import (
    DedupPossible,
    Guard,
    UserHeld,
    deduplicable,
    hold_fields,
    no_dedup_guard,
    no_hold_guard,
)
from media_service.user_counters import SlotLimits, UserCounters
from shared import keys
from shared.clock import utcnow
from shared.content_types import media_type_of
from shared.errors import (
    Conflict,
    Forbidden,
    Gone,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from shared.logging import request_id_var
from shared.media_records import (
    BlobRecord,
    Challenge,
    MediaRecord,
    StaleTransition,
)
from shared.media_states import PENDING_CLIENT
from shared.models import (
    CompletedPart,
    DedupChallenge,
    MediaDocument,
    MediaState,
    MediaType,
    MultipartUpload,
    ReceivedPart,
    SignedPart,
    SingleUpload,
    UploadRequest,
    UploadSlot,
)

log = logging.getLogger("ferry.media")


class OpenMultipart(NamedTuple):
    record: MediaRecord
    upload_id: str
    plan: MultipartPlan


class Uploads(UsesMediaParts):
    def __init__(self, parts: MediaParts, *, counters: UserCounters) -> None:
        super().__init__(parts)
        self.counters = counters

    # --- slots -----------------------------------------------------------------------------

    async def request_slot(self, owner: str, request: UploadRequest) -> UploadSlot:
        with counting_refusals(self.metrics.refusals):
            media_type = self._admit(request)
            now = utcnow()
            plan = plan_upload(
                request.size,
                threshold=self.settings.multipart_threshold_bytes,
                part_size=self.settings.multipart_part_size_bytes,
            )
            if isinstance(plan, MultipartPlan):
                return await self._multipart_or_dedup(owner, request, media_type, plan, now)
            # One DynamoDB round trip for new bytes of a user not under hold: a transaction
            # whose guards (`slot_guards`) refuse, handing back what they found, only when the
            # bytes can be deduplicated or the user is held; then the slot is written again
            # knowing it (two round trips). Each is learnt at most once.
            blob: BlobRecord | None = None
            hold: str | None = None
            hold_known = False
            for _ in range(3):
                held = hold_fields(hold)
                try:
                    if blob is not None:
                        return await self._dedup_slot(
                            owner, request, media_type, blob, now, held, guard_hold=not hold_known
                        )
                    return await self._single_slot(
                        owner, request, media_type, now, held, guard_hold=not hold_known
                    )
                except DedupPossible as found:
                    blob = found.blob
                except UserHeld as found:
                    hold, hold_known = found.reason, True
            raise RuntimeError("a slot's guards kept refusing")  # each is learnt once: never

    async def _multipart_or_dedup(
        self,
        owner: str,
        request: UploadRequest,
        media_type: MediaType,
        plan: MultipartPlan,
        now: datetime,
    ) -> UploadSlot:
        """Large uploads read the hold and the blob first: a refused or deduplicated request
        must not open an S3 multipart session."""
        held = await self._user_hold_fields(owner)
        blob = await self.records.get_blob(keys.blob_key(media_type.value, request.sha256))
        if blob is not None and deduplicable(blob, request):
            return await self._dedup_slot(
                owner, request, media_type, blob, now, held, guard_hold=False
            )
        # Admitted first: a refused request must not open an S3 session.
        await self._take_slot(owner, now, None)
        return await self._multipart_slot(owner, request, media_type, plan, now, held)

    async def _user_hold_fields(self, owner: str) -> dict[str, object]:
        hold = await self.lifecycle.user_hold(owner)
        return hold_fields(None if hold is None else str(hold.get("reason", "")))

    def _admit(self, request: UploadRequest) -> MediaType:
        media_type = media_type_of(request.content_type)
        if media_type is None or request.content_type not in self.settings.allowed_content_types:
            raise UnsupportedMediaType(f"{request.content_type} is not an accepted content type")
        limit = self.settings.max_bytes(media_type)
        if request.size > limit:
            raise PayloadTooLarge(
                f"{media_type.value} uploads are limited to {limit} bytes; this one declares "
                f"{request.size}"
            )
        return media_type

    async def _take_slot(
        self,
        owner: str,
        now: datetime,
        record: MediaRecord | None,
        guards: Sequence[Guard] = (),
    ) -> None:
        """Count a slot against the user's rate and pending limits (a dedup challenge is
        pending too: unanswered ones must not pile up either), putting `record` with it, in
        one transaction with `guards`."""

        async def count_pending() -> int:
            return await self.records.count_pending(owner, now, self.settings.max_pending_uploads)

        quota = self.settings.quota_bytes_per_user
        checks = list(guards)
        if record is not None:
            # The owner's usage item moves (within the quota) in the same transaction.
            record, usage = self.records.counted_slot(record, quota)
            if usage is not None:
                refusal = self.records.quota_refusal(record, quota)
                checks.append(Guard(item=usage, refused=lambda _item: refusal))
        await self.counters.admit(
            owner,
            now=now,
            limits=SlotLimits(
                per_minute=self.settings.slot_rate_per_minute,
                max_pending=self.settings.max_pending_uploads,
            ),
            count_pending=count_pending,
            create=self.records.create_request(record) if record is not None else None,
            guards=checks,
        )

    def _new_record(
        self,
        owner: str,
        request: UploadRequest,
        media_type: MediaType,
        now: datetime,
        **fields: object,
    ) -> MediaRecord:
        media_id = str(fields.pop("media_id", None) or keys.new_media_id())
        base: dict[str, object] = {
            "media_id": media_id,
            "owner": owner,
            "media_type": media_type,
            "content_type": request.content_type,
            "size": request.size,
            "sha256": request.sha256,
            "filename": request.filename,
            "created_at": now,
            "updated_at": now,
            "object_key": keys.original_key(media_id),
            "request_id": request_id_var.get(),
            # The sweeper's index: first due when the slot counts as abandoned.
            "sweep_shard": sweep_shard(media_id),
        }
        record = MediaRecord.model_validate({**base, **fields})
        policy = Policy.from_settings(
            self.settings, abandon_grace_seconds=self.settings.expiry_grace_seconds
        )
        return record.model_copy(update={"sweep_due": next_due(record, now, policy)})

    async def _single_slot(
        self,
        owner: str,
        request: UploadRequest,
        media_type: MediaType,
        now: datetime,
        held: dict[str, object],
        *,
        guard_hold: bool,
    ) -> UploadSlot:
        ttl = self.settings.single_upload_ttl_seconds
        expires_at = now + timedelta(seconds=ttl)
        record = self._new_record(
            owner,
            request,
            media_type,
            now,
            state=MediaState.AWAITING_UPLOAD,
            upload_kind="single",
            upload_expires_at=expires_at,
            pending_owner=owner,
            **held,
        )
        guards = [
            no_dedup_guard(
                self.records.blobs_table,
                keys.blob_key(media_type.value, request.sha256),
                request,
            )
        ]
        if guard_hold:
            guards.append(no_hold_guard(self.records.media_table, owner))
        await self._take_slot(owner, now, record, guards)
        # Signed once the slot is taken: a refused or deduplicated request signs nothing (the
        # signature is computed here, no I/O; it cannot leave the row half-made).
        signed = await self.bucket.sign_put(
            record.object_key,
            content_type=request.content_type,
            size=request.size,
            sha256_hex=request.sha256,
            ttl_seconds=ttl,
        )
        self._count_slot(media_type, "single", request.size)
        return UploadSlot(
            media_id=record.media_id,
            state=record.state,
            media_type=media_type,
            upload=SingleUpload(url=signed.url, headers=signed.headers, expires_at=expires_at),
        )

    async def _multipart_slot(
        self,
        owner: str,
        request: UploadRequest,
        media_type: MediaType,
        plan: MultipartPlan,
        now: datetime,
        held: dict[str, object],
    ) -> UploadSlot:
        expires_at = now + timedelta(seconds=self.settings.multipart_ttl_seconds)
        media_id = keys.new_media_id()
        key = keys.original_key(media_id)
        upload_id = await self.bucket.start_multipart(key, content_type=request.content_type)
        record = self._new_record(
            owner,
            request,
            media_type,
            now,
            media_id=media_id,
            object_key=key,
            state=MediaState.AWAITING_UPLOAD,
            upload_kind="multipart",
            upload_id=upload_id,
            part_size=plan.part_size,
            part_count=plan.part_count,
            upload_expires_at=expires_at,
            pending_owner=owner,
            **held,
        )
        try:
            await self.records.create(record, quota_bytes=self.settings.quota_bytes_per_user)
        except BaseException:
            # No row, no session: nothing half-made is left behind.
            await self.bucket.abort_multipart(key, upload_id=upload_id)
            raise
        self._count_slot(media_type, "multipart", request.size)
        return UploadSlot(
            media_id=media_id,
            state=record.state,
            media_type=media_type,
            upload=MultipartUpload(
                part_size=plan.part_size, part_count=plan.part_count, expires_at=expires_at
            ),
        )

    async def _dedup_slot(
        self,
        owner: str,
        request: UploadRequest,
        media_type: MediaType,
        blob: BlobRecord,
        now: datetime,
        held: dict[str, object],
        *,
        guard_hold: bool,
    ) -> UploadSlot:
        challenge = new_challenge(request.size, self.settings.dedup_proof_bytes)
        expires_at = now + timedelta(seconds=self.settings.proof_ttl_seconds)
        record = self._new_record(
            owner,
            request,
            media_type,
            now,
            state=MediaState.AWAITING_PROOF,
            upload_kind="dedup",
            object_key=blob.object_key,
            upload_expires_at=expires_at,
            pending_owner=owner,
            challenge=Challenge(
                offset=challenge.offset,
                length=challenge.length,
                nonce=challenge.nonce,
                expires_at=expires_at,
            ),
            **held,
        )
        guards = [no_hold_guard(self.records.media_table, owner)] if guard_hold else []
        await self._take_slot(owner, now, record, guards)
        self._count_slot(media_type, "dedup", request.size)
        return UploadSlot(
            media_id=record.media_id,
            state=record.state,
            media_type=media_type,
            dedup=DedupChallenge(
                offset=challenge.offset, length=challenge.length, nonce=challenge.nonce
            ),
        )

    def _count_slot(self, media_type: MediaType, kind: str, size: int) -> None:
        self.metrics.slots.labels(media_type.value, kind).inc()
        self.metrics.declared_size.labels(media_type.value).observe(size)

    # --- dedup proof -----------------------------------------------------------------------

    async def prove(self, owner: str, media_id: str, proof: str) -> MediaDocument:
        record = await self.lookup.owned(owner, media_id)
        if record.state is not MediaState.AWAITING_PROOF:
            raise Conflict("this media is not waiting for a proof", code="invalid_state")
        try:
            challenge = await self.records.take_challenge(media_id)
        except StaleTransition as error:
            raise Conflict("this challenge was already answered", code="invalid_state") from error
        if utcnow() >= challenge.expires_at:
            await self._fail_quietly(media_id, "challenge_expired", "the challenge expired")
            self.metrics.proofs.labels("expired").inc()
            raise Forbidden(
                "the challenge expired; ask for a new upload slot", code="challenge_expired"
            )
        blob = await self.records.get_blob(record.blob_key)
        if blob is None or blob.outcome is None or blob.object_key is None:
            await self._fail_quietly(media_id, "dedup_unavailable", "the stored copy is gone")
            raise Conflict(
                "the stored copy is gone; ask for a new upload slot", code="dedup_unavailable"
            )
        content = await self.bucket.read_range(
            blob.object_key,
            version_id=blob.version_id,
            offset=challenge.offset,
            length=challenge.length,
        )
        if not proof_matches(challenge.nonce, content, proof):
            await self._fail_quietly(media_id, "bad_proof", "the proof of possession was wrong")
            self.metrics.proofs.labels("bad_proof").inc()
            raise Forbidden("the proof does not match the content", code="bad_proof")
        try:
            attached = await self.records.attach_to_blob(record, blob)
        except StaleTransition as error:
            await self._fail_quietly(media_id, "dedup_unavailable", "the stored copy is gone")
            raise Conflict(
                "the stored copy is gone; ask for a new upload slot", code="dedup_unavailable"
            ) from error
        self.metrics.proofs.labels("ok").inc()
        return attached.document()

    async def _fail_quietly(self, media_id: str, code: str, message: str) -> None:
        try:
            await self.records.fail(media_id, code, message)
        except StaleTransition:
            log.info("media %s had already moved on before failing with %s", media_id, code)

    # --- multipart -------------------------------------------------------------------------

    async def _open_multipart(self, owner: str, media_id: str) -> OpenMultipart:
        record = await self.lookup.owned(owner, media_id)
        upload_id, part_size, part_count = record.upload_id, record.part_size, record.part_count
        if upload_id is None or part_size is None or part_count is None:
            raise Conflict("this media is not a multipart upload", code="invalid_state")
        if record.state is not MediaState.AWAITING_UPLOAD:
            raise Conflict(
                f"this upload is no longer open (state {record.state.value})", code="invalid_state"
            )
        if record.upload_expires_at is not None and utcnow() >= record.upload_expires_at:
            raise Gone("this upload session expired; ask for a new slot", code="upload_expired")
        plan = MultipartPlan(size=record.size, part_size=part_size, part_count=part_count)
        return OpenMultipart(record=record, upload_id=upload_id, plan=plan)

    async def sign_parts(
        self, owner: str, media_id: str, part_numbers: list[int]
    ) -> list[SignedPart]:
        record, upload_id, plan = await self._open_multipart(owner, media_id)
        bad = sorted({number for number in part_numbers if not 1 <= number <= plan.part_count})
        if bad:
            raise Unprocessable(
                f"parts {bad} are outside 1..{plan.part_count}", code="invalid_part_number"
            )
        now = utcnow()
        ttl = self.settings.part_url_ttl_seconds
        if record.upload_expires_at is not None:
            ttl = max(1, min(ttl, int((record.upload_expires_at - now).total_seconds())))
        signed_parts = []
        for number in sorted(set(part_numbers)):
            signed = await self.bucket.sign_part(
                record.object_key,
                upload_id=upload_id,
                part_number=number,
                length=plan.part_length(number),
                ttl_seconds=ttl,
            )
            signed_parts.append(
                SignedPart(
                    part_number=number,
                    url=signed.url,
                    headers=signed.headers,
                    expires_at=now + timedelta(seconds=ttl),
                )
            )
        return signed_parts

    async def received_parts(self, owner: str, media_id: str) -> list[ReceivedPart]:
        record, upload_id, plan = await self._open_multipart(owner, media_id)
        parts = await self.bucket.received_parts(record.object_key, upload_id=upload_id)
        if 0 < len(parts) < plan.part_count:
            # Asking what storage has, mid-way, is how a client resumes.
            self.metrics.resumes.inc()
        return parts

    async def complete(
        self, owner: str, media_id: str, parts: list[CompletedPart]
    ) -> MediaDocument:
        record, upload_id, plan = await self._open_multipart(owner, media_id)
        numbers = [part.part_number for part in parts]
        if sorted(numbers) != list(range(1, plan.part_count + 1)):
            self.metrics.completions.labels("invalid_parts").inc()
            raise Unprocessable(
                f"send each of the {plan.part_count} parts exactly once, numbered 1.."
                f"{plan.part_count}",
                code="invalid_parts",
            )
        ordered = sorted((part.part_number, part.etag) for part in parts)
        with counting_refusals(self.metrics.completions):
            await self.bucket.complete_multipart(
                record.object_key, upload_id=upload_id, parts=ordered
            )
        self.metrics.completions.labels("ok").inc()
        # The worker verifies what storage assembled; until then the media awaits it.
        return record.document()

    # --- abandon and delete ----------------------------------------------------------------

    async def delete(self, owner: str, media_id: str) -> None:
        """Abandon an upload, or delete one's own media that no message references.

        A held media answers as deleted (404 from now on) but stays, bytes and all, until its
        hold is released; the sweeper then deletes it."""
        record = await self.lookup.owned(owner, media_id)
        if record.state not in PENDING_CLIENT and await self.access.is_referenced(media_id):
            raise Conflict(
                "messages reference this media; it stays while they do", code="media_referenced"
            )
        if record.held:
            await self.lifecycle.mark_owner_deleted(record, utcnow())
            return
        try:
            deleted = await self.reclaimer.delete_media(record)
        except StaleTransition as error:
            fresh = await self.records.get(media_id)
            if fresh is not None and fresh.held:
                await self.lifecycle.mark_owner_deleted(fresh, utcnow())
                return
            raise Conflict(
                "the media changed while it was being deleted; try again", code="invalid_state"
            ) from error
        self.metrics.lifecycle.deleted.labels("owner").inc()
        self.metrics.lifecycle.reclaimed.labels("owner").inc(deleted.bytes)
        self.metrics.lifecycle.hold_refusals.inc(deleted.refused)
