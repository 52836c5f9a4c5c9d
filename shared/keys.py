"""The bucket's key layout, in one place.

Originals live at `o/{media_id}` (the key of the first verified upload of some bytes);
derivatives are content-addressed at `d/{family}/{sha256}/...`, so deduplicated media share them
and a re-run overwrites identical objects. A blob's identity is its media type family and its
SHA-256 (`{family}/{sha256}`, e.g. `video/9f86...`): the same bytes declared as audio and as
video are two blobs, so their dedup, derivatives and outcomes never mix.
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


# The media type families (`shared.models.MediaType` values): a blob belongs to exactly one.
FAMILIES = frozenset({"image", "voice", "video", "document"})
_BLOB_KEY = re.compile(r"^(image|voice|video|document)/[0-9a-f]{64}$")


def blob_key(family: str, sha256: str) -> str:
    """`{family}/{sha256}`: the identity of some verified bytes as one kind of media."""
    if family not in FAMILIES:
        raise ValueError(f"not a media type family: {family!r}")
    if not _SHA256.fullmatch(sha256):
        raise ValueError("blobs are addressed by a lowercase sha256")
    return f"{family}/{sha256}"


def _checked_blob_key(value: str) -> str:
    if not _BLOB_KEY.fullmatch(value):
        raise ValueError(f"derivative keys are addressed by a blob key (family/sha256): {value!r}")
    return value


_RELATIVE = re.compile(r"^[a-z0-9_]{1,32}(/[A-Za-z0-9_-]{1,32})*/?[A-Za-z0-9_.-]{0,64}$")


def derivative_prefix(blob: str) -> str:
    """`d/{family}/{sha256}/`: every derivative of one blob (see `blob_key`)."""
    return f"{DERIVATIVES_PREFIX}{_checked_blob_key(blob)}/"


def derivative_object_key(blob: str, relative: str) -> str:
    """`d/{family}/{sha256}/{relative}` for a derivative file (`thumb_320.webp`,
    `hls/360p/seg_00001.ts`) of the blob `blob` (see `blob_key`)."""
    prefix = derivative_prefix(blob)
    if ".." in relative or not _RELATIVE.fullmatch(relative):
        raise ValueError(f"not a derivative path: {relative!r}")
    return f"{prefix}{relative}"


def hls_prefix(blob: str) -> str:
    return f"{derivative_prefix(blob)}hls/"


def blob_key_of_derivative(key: str) -> str | None:
    """The blob key (`{family}/{sha256}`) a derivative object belongs to, or None."""
    if not key.startswith(DERIVATIVES_PREFIX):
        return None
    family, _, rest = key[len(DERIVATIVES_PREFIX) :].partition("/")
    sha256, _, relative = rest.partition("/")
    blob = f"{family}/{sha256}"
    return blob if relative and _BLOB_KEY.fullmatch(blob) else None


def media_id_of_original(key: str) -> str | None:
    """The media id of an original's key (`o/{media_id}`), or None."""
    if not key.startswith(ORIGINALS_PREFIX):
        return None
    media_id = key[len(ORIGINALS_PREFIX) :]
    return media_id if is_media_id(media_id) else None
