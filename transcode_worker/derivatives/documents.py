"""Documents: PDFs get a `preview` (the first page as an image) and `meta.page_count`.

Runs in a pool process like every derivation (PDFium is native code reading untrusted bytes,
and is not thread-safe). Opening the PDF is also its content check: bytes that start with
`%PDF-` but are no PDF end `failed` with `corrupt_media`. Pages outside 1..14 400 pt are refused
(`too_large_dimensions`); a password-protected PDF is a document without a preview
(`meta.encrypted`). Other document types (zip, Office, text) get no derivative: the commit
step's checks and the malware scan are all they get.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transcode_worker.derivatives.images import THUMB_FORMATS
from transcode_worker.derivatives.types import Derived, DerivedFile, DerivedVariant, DeriveError
from transcode_worker.safety.pdf import (
    MAX_EDGE,
    PdfCorrupt,
    PdfEncrypted,
    PdfPageTooLarge,
    render_preview,
)

PDF_MAGIC = b"%PDF-"


@dataclass(frozen=True, kw_only=True)
class DocumentLimits:
    preview_edge: int = MAX_EDGE  # the contract: longest edge <= 1280, never upscaled
    preview_format: str = "webp"  # as the image thumbnails (THUMB_FORMATS)
    quality: int = 80


def derive_document(source: Path, out_dir: Path, *, limits: DocumentLimits) -> Derived:
    with source.open("rb") as handle:
        head = handle.read(len(PDF_MAGIC))
    if head != PDF_MAGIC:
        return Derived(meta={})
    meta: dict[str, Any] = {"mime": "application/pdf"}
    try:
        preview = render_preview(source, max_edge=limits.preview_edge)
    except PdfEncrypted:
        return Derived(meta={**meta, "encrypted": True})
    except PdfPageTooLarge as error:
        raise DeriveError("too_large_dimensions", str(error)) from None
    except PdfCorrupt as error:
        raise DeriveError("corrupt_media", str(error)) from None
    pillow_format, extension, content_type = THUMB_FORMATS[limits.preview_format]
    buffer = io.BytesIO()
    preview.image.save(buffer, format=pillow_format, quality=limits.quality)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = f"preview.{extension}"
    path = out_dir / key
    path.write_bytes(buffer.getvalue())
    width, height = preview.image.size
    meta["page_count"] = preview.page_count
    return Derived(
        meta=meta,
        files=[DerivedFile(key=key, path=path, content_type=content_type)],
        variants=[
            DerivedVariant(
                name="preview",
                key=key,
                content_type=content_type,
                size=path.stat().st_size,
                width=width,
                height=height,
            )
        ],
    )
