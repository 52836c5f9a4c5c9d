"""The HLS playback link (API.md v1.1 "Browsers and players"): a master playlist URL that any
player opens with no headers (AVPlayer, ExoPlayer, hls.js, ffmpeg).

The link carries its reader, its expiry and an HMAC over both with the media id; the Media Service
checks the signature, then that reader's access, each time the master is fetched. The window is
the video's duration plus `HLS_PLAYBACK_GRACE_SECONDS`, so a player that starts at the last
moment still reaches the end; it never exceeds what storage can presign (7 days).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote

# S3 (SigV4) refuses presigned URLs that live longer than this.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
MASTER_PATH = "hls/master.m3u8"


class MasterLinkSigner:
    """HMAC tokens for master playlist links: (media, reader, expiry) → signature."""

    def __init__(self, secret: str) -> None:
        # Domain-separated from every other use of the secret (rendition links included).
        self._key = hashlib.sha256(b"ferry-hls-master\x00" + secret.encode()).digest()

    def sign(self, media_id: str, reader: str, expires: int) -> str:
        message = f"{media_id}\x00{reader}\x00{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(
        self, media_id: str, reader: str, expires: int, signature: str, *, now: float
    ) -> bool:
        if expires < now:
            return False
        expected = self.sign(media_id, reader, expires).encode()
        # Bytes: compare_digest refuses non-ASCII text, and the signature comes from a URL.
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def playback_seconds(meta: dict[str, Any], grace_seconds: int) -> int:
    """How long a playback link (and every rendition and segment URL behind it) must live."""
    duration_ms = meta.get("duration_ms")
    duration = duration_ms / 1000 if isinstance(duration_ms, int | float) else 0
    return int(min(MAX_PRESIGN_SECONDS, max(0, duration) + grace_seconds + 1))


def master_url(base_url: str, media_id: str, reader: str, expires: int, signature: str) -> str:
    return (
        f"{base_url.rstrip('/')}/v1/media/{quote(media_id, safe='')}/{MASTER_PATH}"
        f"?expires={expires}&reader={quote(reader, safe='')}&signature={signature}"
    )
