"""The Media Service's use cases, independent of HTTP: routes call these and nothing else."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from media_service.access import AccessPolicy
from media_service.hls import (
    PlaylistSigner,
    is_rendition,
    is_segment_name,
    rendition_of,
    rendition_url,
    rewrite_uris,
)
from media_service.metrics import MediaMetrics
from media_service.planning import (
    MultipartPlan,
    new_challenge,
    plan_upload,
    proof_matches,
)
from media_service.settings import Settings
from media_service.storage import MediaStorage
from shared import keys
from shared.aws import error_code
from shared.content_types import media_type_of
from shared.errors import (
    Conflict,
    DependencyUnavailable,
    FerryError,
    Forbidden,
    Gone,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UnavailableForLegalReasons,
    Unprocessable,
    UnsupportedMediaType,
)
from shared.logging import request_id_var
from shared.media_records import (
    BlobRecord,
    Challenge,
    MediaRecord,
    MediaStore,
    StaleTransition,
    utcnow,
)
from shared.media_states import BYTES_VERIFIED, PENDING_CLIENT
from shared.models import (
    CompletedPart,
    DedupChallenge,
    DownloadUrl,
    MediaDocument,
    MediaInfo,
    MediaState,
    MediaType,
    MultipartUpload,
    ReceivedPart,
    SignedPart,
    SingleUpload,
    UploadRequest,
    UploadSlot,
)
from shared.rate_limits import RateLimitContention, RateLimiter

log = logging.getLogger("ferry.media")

ORIGINAL = "original"
HLS_VARIANT = "hls"
PLAYLIST_LIMIT_BYTES = 1024 * 1024
# Settled blobs whose outcome a deduplicated media may share (a failed one is never offered).
DEDUPLICABLE_OUTCOMES = frozenset({MediaState.READY, MediaState.BLOCKED})


UPLOAD_EXPIRED = "the upload slot expired before its bytes (or proof) arrived"


def upload_abandoned(record: MediaRecord, now: datetime, grace: timedelta) -> bool:
    """Whether a slot or challenge is past its expiry plus `grace` with nothing done (pure).

    The grace lets an upload that started just before its URL expired, and its storage event,
    still land."""
    if record.state is MediaState.AWAITING_UPLOAD and record.upload_expires_at is not None:
        return now > record.upload_expires_at + grace
    if record.state is MediaState.AWAITING_PROOF and record.challenge is not None:
        return now > record.challenge.expires_at + grace
    return False


class OpenMultipart(NamedTuple):
    record: MediaRecord
    upload_id: str
    plan: MultipartPlan


RATE_WINDOW_SECONDS = 60


class MediaService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: MediaStore,
        storage: MediaStorage,
        access: AccessPolicy,
        rate_limiter: RateLimiter,
        playlist_signer: PlaylistSigner,
        metrics: MediaMetrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.access = access
        self.rate_limiter = rate_limiter
        self.playlist_signer = playlist_signer
        self.metrics = metrics

    # --- slots -----------------------------------------------------------------------------

    async def request_slot(self, owner: str, request: UploadRequest) -> UploadSlot:
        try:
            media_type = self._admit(request)
            now = utcnow()
            await self._enforce_rate(owner, now)
            # A challenge is pending too: unanswered ones must not pile up either.
            await self._enforce_pending(owner, now)
            blob = await self.store.get_blob(request.sha256)
            if blob is not None and self._can_dedup(blob, request):
                return await self._dedup_slot(owner, request, media_type, blob, now)
        except FerryError as refusal:
            self.metrics.refusals.labels(refusal.error_code).inc()
            raise
        plan = plan_upload(
            request.size,
            threshold=self.settings.multipart_threshold_bytes,
            part_size=self.settings.multipart_part_size_bytes,
        )
        if isinstance(plan, MultipartPlan):
            return await self._multipart_slot(owner, request, media_type, plan, now)
        return await self._single_slot(owner, request, media_type, now)

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

    async def _enforce_rate(self, owner: str, now: datetime) -> None:
        limit = self.settings.slot_rate_per_minute
        try:
            wait = await self.rate_limiter.try_acquire(
                f"slots#{owner}", limit=limit, window_seconds=RATE_WINDOW_SECONDS, now=now
            )
        except RateLimitContention:
            wait = 1  # many requests of one user racing: the limit is surely near

        if wait is not None:
            raise RateLimited(
                f"at most {limit} upload slots a minute; slow down", retry_after_seconds=wait
            )

    async def _enforce_pending(self, owner: str, now: datetime) -> None:
        limit = self.settings.max_pending_uploads
        if await self.store.count_pending(owner, now, limit) >= limit:
            raise RateLimited(
                f"at most {limit} uploads may be pending at once: finish or abandon one first",
                retry_after_seconds=30,
                code="too_many_pending_uploads",
            )

    @staticmethod
    def _can_dedup(blob: BlobRecord, request: UploadRequest) -> bool:
        return (
            blob.outcome in DEDUPLICABLE_OUTCOMES
            and blob.refcount > 0
            and blob.size == request.size
            and blob.content_type == request.content_type
        )

    def _new_record(
        self,
        owner: str,
        request: UploadRequest,
        media_type: MediaType,
        now: datetime,
        **fields: object,
    ) -> MediaRecord:
        media_id = keys.new_media_id()
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
        }
        return MediaRecord.model_validate({**base, **fields})

    async def _single_slot(
        self, owner: str, request: UploadRequest, media_type: MediaType, now: datetime
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
        )
        signed = await self.storage.sign_put(
            record.object_key,
            content_type=request.content_type,
            size=request.size,
            sha256_hex=request.sha256,
            ttl_seconds=ttl,
        )
        await self.store.create(record)
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
    ) -> UploadSlot:
        expires_at = now + timedelta(seconds=self.settings.multipart_ttl_seconds)
        media_id = keys.new_media_id()
        key = keys.original_key(media_id)
        upload_id = await self.storage.start_multipart(key, content_type=request.content_type)
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
        )
        try:
            await self.store.create(record)
        except BaseException:
            # No row, no session: nothing half-made is left behind.
            await self.storage.abort_multipart(key, upload_id=upload_id)
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
        )
        await self.store.create(record)
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
        record = await self._owned(owner, media_id)
        if record.state is not MediaState.AWAITING_PROOF:
            raise Conflict("this media is not waiting for a proof", code="invalid_state")
        try:
            challenge = await self.store.take_challenge(media_id)
        except StaleTransition as error:
            raise Conflict("this challenge was already answered", code="invalid_state") from error
        if utcnow() >= challenge.expires_at:
            await self._fail_quietly(media_id, "challenge_expired", "the challenge expired")
            self.metrics.proofs.labels("expired").inc()
            raise Forbidden(
                "the challenge expired; ask for a new upload slot", code="challenge_expired"
            )
        blob = await self.store.get_blob(record.sha256)
        if blob is None or blob.outcome is None:
            await self._fail_quietly(media_id, "dedup_unavailable", "the stored copy is gone")
            raise Conflict(
                "the stored copy is gone; ask for a new upload slot", code="dedup_unavailable"
            )
        content = await self.storage.read_range(
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
            attached = await self.store.attach_to_blob(record, blob)
        except StaleTransition as error:
            await self._fail_quietly(media_id, "dedup_unavailable", "the stored copy is gone")
            raise Conflict(
                "the stored copy is gone; ask for a new upload slot", code="dedup_unavailable"
            ) from error
        self.metrics.proofs.labels("ok").inc()
        return attached.document()

    async def _fail_quietly(self, media_id: str, code: str, message: str) -> None:
        try:
            await self.store.fail(media_id, code, message)
        except StaleTransition:
            log.info("media %s had already moved on before failing with %s", media_id, code)

    # --- multipart -------------------------------------------------------------------------

    async def _open_multipart(self, owner: str, media_id: str) -> OpenMultipart:
        record = await self._owned(owner, media_id)
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
            signed = await self.storage.sign_part(
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
        parts = await self.storage.received_parts(record.object_key, upload_id=upload_id)
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
        try:
            await self.storage.complete_multipart(
                record.object_key, upload_id=upload_id, parts=ordered
            )
        except FerryError as refusal:
            self.metrics.completions.labels(refusal.error_code).inc()
            raise
        self.metrics.completions.labels("ok").inc()
        # The worker verifies what storage assembled; until then the media awaits it.
        return record.document()

    # --- abandon and delete ----------------------------------------------------------------

    async def delete(self, owner: str, media_id: str) -> None:
        """Abandon an upload, or delete one's own media that no message references."""
        record = await self._owned(owner, media_id)
        if record.state not in PENDING_CLIENT and await self.access.is_referenced(media_id):
            raise Conflict(
                "messages reference this media; it stays while they do", code="media_referenced"
            )
        if record.state is MediaState.AWAITING_UPLOAD and record.upload_id:
            await self.storage.abort_multipart(record.object_key, upload_id=record.upload_id)
        blob = await self.store.get_blob(record.sha256)
        try:
            remaining = await self.store.delete(record)
        except StaleTransition as error:
            raise Conflict(
                "the media changed while it was being deleted; try again", code="invalid_state"
            ) from error
        owns_object = blob is None or blob.object_key != record.object_key
        if record.version_id and owns_object and record.upload_kind != "dedup":
            await self.storage.delete_version(record.object_key, version_id=record.version_id)
        if remaining == 0 and blob is not None and await self.store.forget_blob(blob.sha256):
            await self.storage.delete_version(blob.object_key, version_id=blob.version_id)

    # --- reading ---------------------------------------------------------------------------

    async def _load(self, media_id: str) -> MediaRecord | None:
        """A media record, with a slot or challenge nobody used in time settled as `expired`
        (an abandoned upload must not wait forever)."""
        record = await self.store.get(media_id) if keys.is_media_id(media_id) else None
        if record is None or not upload_abandoned(
            record, utcnow(), timedelta(seconds=self.settings.expiry_grace_seconds)
        ):
            return record
        if record.upload_id:
            await self.storage.abort_multipart(record.object_key, upload_id=record.upload_id)
        try:
            return await self.store.transition(
                record.media_id,
                MediaState.EXPIRED,
                set_fields={"error": {"code": "upload_expired", "message": UPLOAD_EXPIRED}},
                remove_fields=("pending_owner", "challenge"),
                only_from=frozenset({record.state}),
            )
        except StaleTransition:
            return await self.store.get(media_id)  # the bytes arrived just in time

    async def _owned(self, owner: str, media_id: str) -> MediaRecord:
        record = await self._load(media_id)
        if record is None or record.owner != owner:
            raise NotFound("no such media")
        return record

    async def readable(self, user_id: str, media_id: str) -> MediaRecord:
        """The media if `user_id` may read it; 404 alike for missing and hidden media."""
        record = await self._load(media_id)
        if record is None or not await self.access.can_read(user_id, record):
            raise NotFound("no such media")
        return record

    async def info(self, media_id: str) -> MediaInfo:
        """The internal view, without an access check (the asking service applies its own)."""
        record = await self._load(media_id)
        if record is None:
            raise NotFound("no such media")
        return MediaInfo(
            media_id=record.media_id,
            owner=record.owner,
            state=record.state,
            media_type=record.media_type,
            meta=record.meta,
            variants=[variant.public() for variant in record.variants],
        )

    async def document(self, user_id: str, media_id: str) -> MediaDocument:
        return (await self.readable(user_id, media_id)).document()

    async def download_url(
        self, user_id: str, media_id: str, variant: str, base_url: str
    ) -> DownloadUrl:
        try:
            record = await self.readable(user_id, media_id)
            url = await self._sign_download(record, variant, base_url)
        except FerryError as refusal:
            self.metrics.download_urls.labels(refusal.error_code).inc()
            raise
        except (BotoCoreError, ClientError):
            # Answered 503 `dependency_unavailable` at the edge; counted as that here.
            self.metrics.download_urls.labels(DependencyUnavailable.code).inc()
            raise
        self.metrics.download_urls.labels("ok").inc()
        return url

    # --- HLS ----------------------------------------------------------------------------------

    async def hls_master(self, user_id: str, media_id: str, base_url: str) -> str:
        """The master playlist, its renditions pointing back here with signed links."""
        try:
            record = await self.readable(user_id, media_id)
            self._servable(record)
            master = record.variant(HLS_VARIANT)
            if master is None:
                raise NotFound("this media has no HLS playlist (yet)", code="no_such_variant")
            text = await self.storage.read_text(master.key, limit=PLAYLIST_LIMIT_BYTES)
        except FerryError as refusal:
            self.metrics.download_urls.labels(refusal.error_code).inc()
            raise
        except (BotoCoreError, ClientError):
            self.metrics.download_urls.labels(DependencyUnavailable.code).inc()
            raise
        expires = int(utcnow().timestamp()) + self.settings.download_url_ttl_seconds

        def signed(uri: str) -> str | None:
            rendition = rendition_of(uri)
            if rendition is None:
                return None
            signature = self.playlist_signer.sign(media_id, rendition, expires)
            public = self.settings.public_url or base_url
            return rendition_url(public, media_id, rendition, expires, signature)

        self.metrics.download_urls.labels("ok").inc()
        return rewrite_uris(text, signed)

    async def hls_rendition(
        self, media_id: str, rendition: str, expires: int, signature: str
    ) -> str:
        """A rendition playlist whose segments are presigned storage URLs.

        No bearer token: players cannot send one; the signature from the master playlist,
        which only a reader could get, is the grant, and it expires with the URLs.
        """
        if not (
            is_rendition(rendition)
            and self.playlist_signer.verify(media_id, rendition, expires, signature)
        ):
            raise NotFound("no such playlist, or its link expired")
        record = await self.store.get(media_id) if keys.is_media_id(media_id) else None
        if record is None:
            raise NotFound("no such playlist, or its link expired")
        self._servable(record)
        prefix = f"{keys.hls_prefix(record.sha256)}{rendition}/"
        try:
            text = await self.storage.read_text(f"{prefix}index.m3u8", limit=PLAYLIST_LIMIT_BYTES)
        except Exception as error:
            if error_code(error) in ("NoSuchKey", "404"):
                raise NotFound("no such playlist, or its link expired") from error
            raise
        ttl = max(1, min(self.settings.download_url_ttl_seconds, expires - int(time.time())))
        segments: dict[str, str] = {}
        for line in text.splitlines():
            name = line.strip()
            if name and not name.startswith("#") and is_segment_name(name):
                segments[name] = await self.storage.sign_get(
                    f"{prefix}{name}", version_id=None, ttl_seconds=ttl
                )
        return rewrite_uris(text, segments.get)

    def _servable(self, record: MediaRecord) -> None:
        if record.state is MediaState.BLOCKED:
            raise UnavailableForLegalReasons("this media was blocked by moderation")
        if record.state is MediaState.EXPIRED:
            raise Gone("this media has expired", code="media_expired")
        if record.state is MediaState.FAILED:
            raise Conflict("this media failed; it cannot be served", code="media_unusable")

    async def _sign_download(self, record: MediaRecord, variant: str, base_url: str) -> DownloadUrl:
        self._servable(record)
        if record.state not in BYTES_VERIFIED:
            raise NotFound("the bytes of this media have not arrived yet", code="no_such_variant")
        ttl = self.settings.download_url_ttl_seconds
        expires_at = utcnow() + timedelta(seconds=ttl)
        if variant == HLS_VARIANT and record.variant(HLS_VARIANT) is not None:
            # A stored playlist's URIs are relative and storage signs one key per URL: players
            # get the playlist this service writes, whose links are signed (same access rules).
            public = self.settings.public_url or base_url
            url = f"{public.rstrip('/')}/v1/media/{record.media_id}/hls/master.m3u8"
            return DownloadUrl(url=url, expires_at=expires_at)
        if variant == ORIGINAL:
            url = await self.storage.sign_get(
                record.object_key,
                version_id=record.version_id,
                ttl_seconds=ttl,
                content_type=record.content_type,
                download_name=record.filename if record.media_type is MediaType.DOCUMENT else None,
            )
            return DownloadUrl(url=url, expires_at=expires_at)
        stored = record.variant(variant)
        if stored is None:
            raise NotFound(f"this media has no variant {variant!r} (yet)", code="no_such_variant")
        url = await self.storage.sign_get(
            stored.key, version_id=None, ttl_seconds=ttl, content_type=stored.content_type
        )
        return DownloadUrl(url=url, expires_at=expires_at)
