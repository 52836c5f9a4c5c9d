"""HLS playlists with signed URIs (pure).

Storage signs one key per URL, so the Media Service serves the playlists itself (text only,
never segment bytes): the master playlist's rendition URIs point back here with a short-lived
HMAC signature (a player cannot add an Authorization header), and each rendition playlist's
segment URIs are presigned storage URLs. The signature names the reader it was made for, so
the rendition playlist re-checks that reader's access every time it signs segments: a member
who left stops getting fresh segment URLs at once, not when the link expires.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable
from urllib.parse import quote

PLAYLIST_CONTENT_TYPE = "application/vnd.apple.mpegurl"
# A rendition directory as the worker writes it: "360p", "720p", ...
_RENDITION = re.compile(r"^[0-9]{2,4}p$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def is_rendition(name: str) -> bool:
    return bool(_RENDITION.fullmatch(name))


def is_segment_name(name: str) -> bool:
    return bool(_SEGMENT.fullmatch(name)) and ".." not in name


class PlaylistSigner:
    """HMAC tokens for rendition playlists: (media, rendition, expiry, reader) → signature."""

    def __init__(self, secret: str) -> None:
        # Domain-separated from every other use of the secret.
        self._key = hashlib.sha256(b"ferry-hls-playlist\x00" + secret.encode()).digest()

    def sign(self, media_id: str, rendition: str, expires: int, reader: str) -> str:
        message = f"{media_id}\x00{rendition}\x00{expires}\x00{reader}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(
        self,
        media_id: str,
        rendition: str,
        expires: int,
        signature: str,
        reader: str,
        *,
        now: float | None = None,
    ) -> bool:
        if expires < (time.time() if now is None else now):
            return False
        # Bytes: compare_digest refuses non-ASCII text, and the signature comes from a URL.
        expected = self.sign(media_id, rendition, expires, reader).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def rewrite_uris(playlist: str, rewrite: Callable[[str], str | None]) -> str:
    """Replace every URI line of an M3U8 playlist; a line `rewrite` refuses (None) is dropped
    with the tag line that announced it, so a tampered playlist cannot point anywhere else."""
    lines = playlist.splitlines()
    out: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            out.append(line)
            continue
        replaced = rewrite(stripped)
        if replaced is None:
            # Drop the preceding #EXT-X-STREAM-INF / #EXTINF that described this URI.
            if out and out[-1].startswith(("#EXT-X-STREAM-INF", "#EXTINF")):
                out.pop()
            continue
        out.append(replaced)
    return "\n".join(out) + "\n"


def rendition_of(uri: str) -> str | None:
    """`360p/index.m3u8` → `360p`; anything else → None."""
    directory, _, name = uri.partition("/")
    return directory if is_rendition(directory) and name == "index.m3u8" else None


def rendition_url(
    base_url: str, media_id: str, rendition: str, expires: int, signature: str, reader: str
) -> str:
    return (
        f"{base_url.rstrip('/')}/v1/media/{quote(media_id, safe='')}/hls/{rendition}/index.m3u8"
        f"?expires={expires}&reader={quote(reader, safe='')}&signature={signature}"
    )
