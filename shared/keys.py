"""The bucket's key layout, in one place.

Originals live at `o/{media_id}` (the key of the first verified upload of some bytes);
derivatives are content-addressed at `d/{sha256}/...`, so deduplicated media share them and a
re-run overwrites identical objects.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import unquote_plus

ORIGINALS_PREFIX = "o/"
DERIVATIVES_PREFIX = "d/"
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def new_media_id() -> str:
    """A URL-safe random id (128 bits), unguessable so ids cannot be enumerated."""
    return "m_" + secrets.token_urlsafe(16)


def is_media_id(value: str) -> bool:
    return bool(_MEDIA_ID.fullmatch(value))


def original_key(media_id: str) -> str:
    if not is_media_id(media_id):
        raise ValueError(f"not a media id: {media_id!r}")
    return f"{ORIGINALS_PREFIX}{media_id}"


def media_id_from_event_key(raw_key: str) -> str | None:
    """The media id of an S3 event's object key, or None when the key is not an original.

    S3 event keys are URL-encoded (`o%2Fm_...`, spaces as `+`), hence `unquote_plus`.
    """
    key = unquote_plus(raw_key)
    if not key.startswith(ORIGINALS_PREFIX):
        return None
    media_id = key[len(ORIGINALS_PREFIX) :]
    return media_id if is_media_id(media_id) else None


_RELATIVE = re.compile(r"^[a-z0-9_]{1,32}(/[A-Za-z0-9_-]{1,32})*/?[A-Za-z0-9_.-]{0,64}$")


def derivative_object_key(sha256: str, relative: str) -> str:
    """`d/{sha256}/{relative}` for a derivative file (`thumb_320.webp`, `hls/360p/seg_00001.ts`)."""
    if not _SHA256.fullmatch(sha256):
        raise ValueError("derivative keys are addressed by a lowercase sha256")
    if ".." in relative or not _RELATIVE.fullmatch(relative):
        raise ValueError(f"not a derivative path: {relative!r}")
    return f"{DERIVATIVES_PREFIX}{sha256}/{relative}"


def hls_prefix(sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise ValueError("derivative keys are addressed by a lowercase sha256")
    return f"{DERIVATIVES_PREFIX}{sha256}/hls/"


def derivatives_prefix(blob_key: str) -> str:
    """`d/{blob_key}/`: every derivative object of some verified bytes, HLS included."""
    if not _SHA256.fullmatch(blob_key):
        raise ValueError("derivative keys are addressed by a lowercase sha256")
    return f"{DERIVATIVES_PREFIX}{blob_key}/"


def blob_key_of_derivative(key: str) -> str | None:
    """The blob key a derivative object belongs to (`d/{blob_key}/...`), or None."""
    if not key.startswith(DERIVATIVES_PREFIX):
        return None
    blob_key, _, rest = key[len(DERIVATIVES_PREFIX) :].partition("/")
    return blob_key if rest and _SHA256.fullmatch(blob_key) else None


def media_id_of_original(key: str) -> str | None:
    """The media id of an original's key (`o/{media_id}`), or None."""
    if not key.startswith(ORIGINALS_PREFIX):
        return None
    media_id = key[len(ORIGINALS_PREFIX) :]
    return media_id if is_media_id(media_id) else None
