"""PDF test documents, written at run time (no binary fixtures).

`pdf` writes a minimal but valid PDF by hand (correct cross-reference table), so tests control
page sizes and can embed exact bytes (the test malware marker). `pdf_with_pictures` uses
Pillow's PDF writer for pages with real image content.
"""

from __future__ import annotations

import io
import os

from PIL import Image

from tests.media_factory.images import random_bytes
from tests.media_factory.safety import MALWARE_MARKER


def pdf(
    pages: list[tuple[float, float]] | None = None,
    *,
    comment: bytes | None = None,
    text: str = "Ferry",
    padding: bytes = b"",
) -> bytes:
    """A PDF with one page per (width, height) in points (default: 3 A4 pages), each showing
    `text` and a filled rectangle. `comment` is placed as a `%` comment line after the header,
    uncompressed (where a byte signature finds it). `padding` becomes the body of a stream
    object no page uses (a large but valid PDF)."""
    sizes = pages if pages is not None else [(595.0, 842.0)] * 3
    objects: list[bytes] = []
    page_ids = [3 + 2 * index for index in range(len(sizes))]
    font_id = 3 + 2 * len(sizes)
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = b" ".join(b"%d 0 R" % page_id for page_id in page_ids)
    objects.append(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(sizes)))
    for index, (width, height) in enumerate(sizes):
        content = (
            b"0.2 0.4 0.8 rg 20 20 %.2f %.2f re f "
            b"BT /F1 24 Tf 0 0 0 rg 40 %.2f Td (%s %d) Tj ET"
            % (width / 2, height / 3, height - 60, text.encode("latin-1"), index + 1)
        )
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>"
            % (width, height, page_ids[index] + 1, font_id)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    if padding:
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(padding), padding))

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    if comment is not None:
        out += b"% " + comment + b"\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def sized_pdf(size: int) -> bytes:
    """A valid 1-page PDF of exactly `size` bytes (at least ~1 KiB): random padding in an unused
    stream, so it is incompressible and never deduplicated."""
    bare = len(pdf([(595.0, 842.0)], padding=b"x"))
    # The padding's length appears in the file twice (its /Length and the xref offsets
    # shift with it); a fixed-width guess converges in a couple of tries.
    padding = max(1, size - bare)
    for _ in range(5):
        made = pdf([(595.0, 842.0)], padding=os.urandom(padding))
        if len(made) == size:
            return made
        padding += size - len(made)
    raise ValueError(f"cannot make a PDF of exactly {size} bytes")


def infected_pdf() -> bytes:
    """A valid 1-page PDF carrying the test malware marker (`MALWARE_MARKER`)."""
    return pdf([(595.0, 842.0)], comment=MALWARE_MARKER)


def fake_pdf(size: int = 4096) -> bytes:
    """`%PDF-1.7` followed by random bytes: declared PDF, not one."""
    return b"%PDF-1.7\n" + random_bytes(size, seed=13)


def pdf_with_pictures(pictures: list[Image.Image], *, resolution: float = 72.0) -> bytes:
    """One page per picture (Pillow's PDF writer); page size = pixels * 72 / resolution pt."""
    first, *rest = (picture.convert("RGB") for picture in pictures)
    buffer = io.BytesIO()
    first.save(buffer, format="PDF", save_all=True, append_images=rest, resolution=resolution)
    return buffer.getvalue()
