"""PDF previews with PDFium (the `pypdfium2` wheel bundles it): the first page as an image, and
the page count.

Opening the document is also the content check: bytes that start with `%PDF-` but are not a
PDF (random bytes after the header, a truncated file PDFium cannot repair, no pages) raise
`PdfCorrupt`, which the pipeline maps to `corrupt_media`. Encrypted documents raise
`PdfEncrypted`: we hold no password and preview nothing.

The preview is rendered at `RENDER_SCALE` (2x the page's 72-dpi size, a sharp picture on phone
screens), then capped so its longest edge is at most `max_edge`; a small page is never scaled
up beyond that. Pages larger than `MAX_PAGE_POINTS` on a side (14 400 pt, 200 inches: the
PDF specification's own limit for default user space) or smaller than 1 pt are refused before
anything is rendered: rendering cost follows the output size, which is capped, but an absurd
page is a sign of a crafted file.

PDFium is not thread-safe: call this from one thread per process (the worker's pool processes
run one job at a time). Render time is bounded by the pool's job timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image

__all__ = [
    "MAX_EDGE",
    "MAX_PAGE_POINTS",
    "RENDER_SCALE",
    "PdfCorrupt",
    "PdfEncrypted",
    "PdfError",
    "PdfPageTooLarge",
    "PdfPreview",
    "render_preview",
]

MAX_EDGE = 1280  # the contract: longest edge of the `preview` variant
MAX_PAGE_POINTS = 14_400.0
MIN_PAGE_POINTS = 1.0
RENDER_SCALE = 2.0  # pixels per PDF point (1 pt = 1/72 in)
_PASSWORD_ERROR = 4  # FPDF_ERR_PASSWORD


class PdfError(Exception):
    """A PDF we will not preview."""


class PdfCorrupt(PdfError):
    """Not a PDF PDFium can open (maps to `corrupt_media`)."""


class PdfEncrypted(PdfError):
    """Password-protected: nothing to preview."""


class PdfPageTooLarge(PdfError):
    """The first page's size is outside what we render."""


@dataclass(frozen=True, kw_only=True)
class PdfPreview:
    image: Image.Image  # RGB, longest edge <= max_edge
    page_count: int
    page_size: tuple[float, float]  # the first page, in points (width, height)


def _open(source: bytes | Path) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(source)
    except pdfium.PdfiumError as error:
        if getattr(error, "err_code", None) == _PASSWORD_ERROR:
            raise PdfEncrypted("the PDF is password-protected") from None
        raise PdfCorrupt(f"not a readable PDF ({error})") from None


def render_preview(source: bytes | Path, *, max_edge: int = MAX_EDGE) -> PdfPreview:
    """The first page of the PDF at `source` (its bytes or a file) as an RGB image.

    Raises `PdfCorrupt`, `PdfEncrypted` or `PdfPageTooLarge`.
    """
    document = _open(source)
    try:
        page_count = len(document)
        if page_count < 1:
            raise PdfCorrupt("the PDF has no pages")
        try:
            page = document[0]
        except pdfium.PdfiumError as error:
            raise PdfCorrupt(f"the first page cannot be loaded ({error})") from None
        try:
            width, height = page.get_size()
            longest = max(width, height)
            if min(width, height) < MIN_PAGE_POINTS or longest > MAX_PAGE_POINTS:
                raise PdfPageTooLarge(
                    f"page of {width:.0f}x{height:.0f} pt is outside "
                    f"{MIN_PAGE_POINTS:.0f}..{MAX_PAGE_POINTS:.0f} pt"
                )
            scale = min(RENDER_SCALE, max_edge / longest)
            bitmap = page.render(scale=scale, may_draw_forms=True, fill_color=(255, 255, 255, 255))
            try:
                image: Image.Image = bitmap.to_pil().convert("RGB")
            finally:
                bitmap.close()
        finally:
            page.close()
    finally:
        document.close()
    # Rounding in PDFium can add a pixel; the contract's cap is strict.
    if max(image.size) > max_edge:
        image.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
    return PdfPreview(image=image, page_count=page_count, page_size=(width, height))
