"""The recipients' original: a derivation step that adds a metadata-free copy of the original.

API.md "Privacy of originals": nobody but the owner receives location or camera metadata. For
images and videos the derivation of the media type runs first (thumbnails, poster, HLS); then
the strip function of the family writes the original without its metadata, losslessly, as the
`original_clean` derivative (content-addressed like the others, so deduplicated media share
it). When there is nothing to remove, no copy is made: the original is already clean.
A container the strip function cannot parse fails the media (`corrupt_media`): handing its
metadata out is not an option.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from shared.media_records import CLEAN_ORIGINAL_VARIANT
from transcode_worker.derivatives.types import (
    Derived,
    DerivedFile,
    DerivedVariant,
    DeriveError,
    StripError,
)

# (source, target) → the content type written, or None when nothing had to be removed.
StripFunction = Callable[[Path, Path], str | None]

EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/heic": "heic",
    "image/heif": "heif",
    "video/mp4": "mp4",
    "video/quicktime": "mov",
}


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def with_clean_original(
    source: Path,
    out_dir: Path,
    *,
    derive: Callable[[Path, Path], Derived],
    strip: StripFunction,
) -> Derived:
    """`derive`, plus the `original_clean` variant when `strip` removed something."""
    derived = derive(source, out_dir)
    if derived.blocked_reason is not None:
        return derived  # nothing of a blocked media is published
    partial = out_dir / "original_clean.partial"
    try:
        content_type = strip(source, partial)
    except StripError as error:
        raise DeriveError("corrupt_media", f"the file's container is malformed: {error}") from error
    if content_type is None:
        return derived
    key = f"{CLEAN_ORIGINAL_VARIANT}.{EXTENSIONS[content_type]}"
    path = out_dir / key
    os.replace(partial, path)
    clean = DerivedFile(key=key, path=path, content_type=content_type)
    variant = DerivedVariant(
        name=CLEAN_ORIGINAL_VARIANT,
        key=key,
        content_type=content_type,
        size=path.stat().st_size,
        sha256=_sha256_of(path),
    )
    return replace(derived, files=[*derived.files, clean], variants=[*derived.variants, variant])
