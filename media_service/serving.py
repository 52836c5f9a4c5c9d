"""Serving media, independent of HTTP: documents, signed download URLs, HLS playlists."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from media_service.hls import (
    PlaylistSigner,
    is_rendition,
    is_segment_name,
    rendition_of,
    rendition_url,
    rewrite_uris,
)
from media_service.hls_links import (
    MAX_PRESIGN_SECONDS,
    MasterLinkSigner,
    master_url,
    playback_seconds,
)
from media_service.metrics import counting_refusals
from media_service.parts import MediaParts, UsesMediaParts
from shared import keys
from shared.aws import error_code
from shared.clock import utcnow
from shared.errors import Conflict, Gone, NotFound, UnavailableForLegalReasons
from shared.media_records import MediaRecord
from shared.media_states import BYTES_VERIFIED
from shared.models import DownloadUrl, MediaDocument, MediaInfo, MediaState, MediaType

ORIGINAL = "original"
HLS_VARIANT = "hls"
PLAYLIST_LIMIT_BYTES = 1024 * 1024
# Media types whose original carries location or camera metadata that processing removes.
STRIPPED_TYPES = frozenset({MediaType.IMAGE, MediaType.VIDEO})


class Serving(UsesMediaParts):
    def __init__(self, parts: MediaParts, *, playlist_signer: PlaylistSigner) -> None:
        super().__init__(parts)
        self.playlist_signer = playlist_signer

    async def readable(self, user_id: str, media_id: str, *, admin: bool = False) -> MediaRecord:
        """The media if `user_id` may read it; 404 alike for missing and hidden media.
        Admins read any media document.

        Alike in time too: a hidden media costs an access check at the Message Service, so a
        missing one asks the same question (whose answer is known), or the latency would tell
        which ids exist (a timing oracle)."""
        record = await self.lookup.load(media_id, hidden=admin)
        if record is None:
            if keys.is_media_id(media_id) and not admin:
                await self.access.ask_as_for_hidden(user_id, media_id)
            raise NotFound("no such media")
        if not (admin or await self.access.can_read(user_id, record)):
            raise NotFound("no such media")
        return record

    async def info(self, media_id: str) -> MediaInfo:
        """The internal view, without an access check (the asking service applies its own)."""
        record = await self.lookup.load(media_id)
        if record is None:
            raise NotFound("no such media")
        return record.info()

    async def document(self, user_id: str, media_id: str, *, admin: bool = False) -> MediaDocument:
        record = await self.readable(user_id, media_id, admin=admin)
        document = record.document(reader=user_id)
        if admin:
            return document.model_copy(
                update={
                    "legal_hold": record.held,
                    "nsfw_score": record.nsfw_score,
                    "quarantined": record.quarantined,
                }
            )
        return document

    async def download_url(
        self, user_id: str, media_id: str, variant: str, base_url: str
    ) -> DownloadUrl:
        if variant == HLS_VARIANT:
            # Not a storage URL: the master playlist this service writes, behind a signed link
            # that plays with no headers (storage signs one key per URL; playlists are relative).
            return await self.hls_playback_url(user_id, media_id, base_url)
        # An AWS failure is answered 503 `dependency_unavailable` at the edge: counted as that.
        with counting_refusals(self.metrics.download_urls, dependency_errors=True):
            record = await self.readable(user_id, media_id)
            url = await self._sign_download(record, variant, base_url, user_id)
        self.metrics.download_urls.labels("ok").inc()
        return url

    # --- HLS ----------------------------------------------------------------------------------

    async def hls_playback_url(self, user_id: str, media_id: str, base_url: str) -> DownloadUrl:
        """`url?variant=hls`: a master playlist link a player opens with no headers, valid for
        the video's duration plus the grace period (`media_service.hls_links`)."""
        with counting_refusals(self.metrics.download_urls, dependency_errors=True):
            record = await self.readable(user_id, media_id)
            self._servable(record, HLS_VARIANT)
            if record.state not in BYTES_VERIFIED or record.variant(HLS_VARIANT) is None:
                raise NotFound("this media has no HLS playlist (yet)", code="no_such_variant")
        expires = self._playback_expiry(record)
        signature = self.master_signer.sign(media_id, user_id, expires)
        public = self.settings.public_url or base_url
        self.metrics.download_urls.labels("ok").inc()
        return DownloadUrl(
            url=master_url(public, media_id, user_id, expires, signature),
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

    async def hls_master_by_link(
        self, media_id: str, reader: str, expires: int, signature: str, base_url: str
    ) -> str:
        """The master playlist through a playback link: the link names its reader, whose access
        is checked again now (a member who left gets nothing)."""
        if not self.master_signer.verify(media_id, reader, expires, signature, now=time.time()):
            raise NotFound("no such playlist, or its link expired")
        return await self.hls_master(reader, media_id, base_url)

    @property
    def master_signer(self) -> MasterLinkSigner:
        return MasterLinkSigner(self.settings.auth_jwt_secret)

    def _playback_expiry(self, record: MediaRecord) -> int:
        window = playback_seconds(record.meta, self.settings.hls_playback_grace_seconds)
        return int(time.time()) + window

    async def hls_master(self, user_id: str, media_id: str, base_url: str) -> str:
        """The master playlist, its renditions pointing back here with signed links."""
        with counting_refusals(self.metrics.download_urls, dependency_errors=True):
            record = await self.readable(user_id, media_id)
            self._servable(record, HLS_VARIANT)
            master = record.variant(HLS_VARIANT)
            if master is None:
                raise NotFound("this media has no HLS playlist (yet)", code="no_such_variant")
            text = await self.bucket.read_text(master.key, limit=PLAYLIST_LIMIT_BYTES)
        # Rendition links live as long as playback may last (duration + grace), not 5 minutes.
        expires = self._playback_expiry(record)

        def signed(uri: str) -> str | None:
            rendition = rendition_of(uri)
            if rendition is None:
                return None
            signature = self.playlist_signer.sign(media_id, rendition, expires, user_id)
            public = self.settings.public_url or base_url
            return rendition_url(public, media_id, rendition, expires, signature, user_id)

        self.metrics.download_urls.labels("ok").inc()
        return rewrite_uris(text, signed)

    async def hls_rendition(
        self, media_id: str, rendition: str, expires: int, signature: str, reader: str
    ) -> str:
        """A rendition playlist whose segments are presigned storage URLs.

        No bearer token: players cannot send one; the signature from the master playlist,
        which only a reader could get, names that reader and expires with the URLs. The
        reader's access is checked again here, each time segments are signed: a member who
        left the conversation gets no fresh segment URL from a link fetched before.
        """
        if not (
            is_rendition(rendition)
            and self.playlist_signer.verify(media_id, rendition, expires, signature, reader)
        ):
            raise NotFound("no such playlist, or its link expired")
        record = await self.records.get(media_id) if keys.is_media_id(media_id) else None
        if record is None or not await self.access.can_read(reader, record):
            raise NotFound("no such playlist, or its link expired")
        self._servable(record, HLS_VARIANT)
        prefix = f"{keys.hls_prefix(record.blob_key)}{rendition}/"
        try:
            text = await self.bucket.read_text(f"{prefix}index.m3u8", limit=PLAYLIST_LIMIT_BYTES)
        except Exception as error:
            if error_code(error) in ("NoSuchKey", "404"):
                raise NotFound("no such playlist, or its link expired") from error
            raise
        # Segments are signed until the link expires: a player fetches the rendition playlist
        # once and its segments over the whole video (signed again on each fetch of this list).
        ttl = max(1, min(MAX_PRESIGN_SECONDS, expires - int(time.time())))
        segments: dict[str, str] = {}
        for line in text.splitlines():
            name = line.strip()
            if name and not name.startswith("#") and is_segment_name(name):
                segments[name] = await self.bucket.sign_get(
                    f"{prefix}{name}", version_id=None, ttl_seconds=ttl
                )
        return rewrite_uris(text, segments.get)

    async def _sign_recipients_original(
        self, record: MediaRecord, ttl: int, expires_at: datetime
    ) -> DownloadUrl:
        """What a reader other than the owner downloads as `original`: the copy without
        location and camera metadata when processing made one (API.md "Privacy of originals"),
        and for images and videos nothing before processing has had the chance to."""
        clean = record.clean_original()
        if clean is not None:
            url = await self.bucket.sign_get(
                clean.key, version_id=None, ttl_seconds=ttl, content_type=clean.content_type
            )
            return DownloadUrl(url=url, expires_at=expires_at)
        if record.media_type in STRIPPED_TYPES and record.state is not MediaState.READY:
            raise NotFound(
                "the original is not ready for readers yet (processing removes its metadata)",
                code="no_such_variant",
            )
        url = await self.bucket.sign_get(
            record.object_key,
            version_id=record.version_id,
            ttl_seconds=ttl,
            content_type=record.content_type,
            download_name=record.filename if record.media_type is MediaType.DOCUMENT else None,
        )
        return DownloadUrl(url=url, expires_at=expires_at)

    def _servable(self, record: MediaRecord, variant: str) -> None:
        if record.visible_state is MediaState.BLOCKED:  # moderation, or an admin's quarantine
            raise UnavailableForLegalReasons("this media was blocked by moderation")
        if record.state is MediaState.FAILED:
            raise Conflict("this media failed; it cannot be served", code="media_unusable")
        # Retention retires the original first; derivatives stay until their own time.
        retired = record.derivatives_retired if variant != ORIGINAL else record.original_retired
        if retired or (record.state is MediaState.EXPIRED and not record.original_retired):
            raise Gone("this media has expired", code="media_expired")

    async def _check_not_archived(self, record: MediaRecord) -> None:
        """Originals past the cold-storage age, when the configured class needs a restore:
        say so (409 `media_archived`) rather than hand out a URL that answers 403."""
        if not self.settings.cold_needs_restore:
            return  # the default classes stay directly readable: no HEAD on every download
        age = utcnow() - record.created_at
        if age.total_seconds() < self.settings.cold_storage_after_seconds:
            return
        if await self.bucket.archived(record.object_key, version_id=record.version_id):
            raise Conflict(
                "this original is in archival storage and must be restored before download",
                code="media_archived",
            )

    async def _sign_download(
        self, record: MediaRecord, variant: str, base_url: str, reader: str
    ) -> DownloadUrl:
        self._servable(record, variant)
        if record.state not in BYTES_VERIFIED and not record.original_retired:
            raise NotFound("the bytes of this media have not arrived yet", code="no_such_variant")
        ttl = self.settings.download_url_ttl_seconds
        expires_at = utcnow() + timedelta(seconds=ttl)
        if variant == ORIGINAL and reader != record.owner:
            return await self._sign_recipients_original(record, ttl, expires_at)
        if variant == ORIGINAL:
            await self._check_not_archived(record)
            url = await self.bucket.sign_get(
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
        url = await self.bucket.sign_get(
            stored.key, version_id=None, ttl_seconds=ttl, content_type=stored.content_type
        )
        return DownloadUrl(url=url, expires_at=expires_at)
