"""Lossless metadata removal from images: byte-level surgery on the container, no re-encoding.

What a recipient of someone else's photo downloads as its `original` (API.md "Privacy of
originals"): the same pixels, bit for bit, without EXIF, XMP, IPTC, comments or embedded
thumbnails and trailers (which carry GPS positions, camera serials, dates). Kept: everything
that decodes the pixels (quantisation and Huffman tables, frame headers, PNG/WebP image data),
the ICC colour profile (it holds no personal data and the colours depend on it) and the EXIF
orientation, rewritten as a TIFF block holding that one tag (so the photo is not shown sideways).

- JPEG: APP1 (EXIF, XMP), APP3-APP13 and APP15 (IPTC, maker data), COM, APP2 other than
  `ICC_PROFILE` (MPF), APP0 other than JFIF (JFXX thumbnails) and anything after EOI (embedded
  secondary images) are dropped; the entropy-coded data is copied as is.
- PNG: `eXIf`, `tEXt`, `zTXt`, `iTXt` and `tIME` chunks dropped; nothing after `IEND`.
- WebP: `EXIF` and `XMP ` chunks dropped, the VP8X flags and the RIFF size fixed.
- HEIC/HEIF: the `Exif` and XMP (`mime`) items are overwritten in place (an empty EXIF block,
  XMP with spaces), so no offset in the file moves; orientation lives in `irot`/`imir`.

Other formats (GIF) are not rewritten: `strip_image` answers None.
Pure functions over bytes plus one file-to-file wrapper; they run in the derive pool.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from transcode_worker.derivatives.exif_orientation import (
    EMPTY_TIFF,
    orientation_of,
    orientation_tiff,
)
from transcode_worker.derivatives.types import StripError

EXIF_PREFIX = b"Exif\x00\x00"
ICC_PREFIX = b"ICC_PROFILE\x00"
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DROPPED = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})
_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04


__all__ = ["StripError", "StrippedImage", "strip_image", "strip_image_bytes"]


@dataclass(frozen=True)
class StrippedImage:
    data: bytes
    content_type: str
    # What was taken out (for logs and tests), e.g. ["APP1 Exif", "COM"].
    removed: tuple[str, ...]


def strip_image(source: Path, target: Path) -> str | None:
    """Write `source` without its metadata to `target`; the content type written, or None
    when the format is not one this module rewrites or there was nothing to remove (then the
    original itself is what everyone downloads)."""
    data = source.read_bytes()
    stripped = strip_image_bytes(data)
    if stripped is None or stripped.data == data:
        return None
    target.write_bytes(stripped.data)
    return stripped.content_type


def strip_image_bytes(data: bytes) -> StrippedImage | None:
    if data.startswith(b"\xff\xd8"):
        return strip_jpeg(data)
    if data.startswith(_PNG_SIGNATURE):
        return strip_png(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return strip_webp(data)
    if data[4:8] == b"ftyp":
        return strip_heif(data)
    return None


# --- JPEG ---------------------------------------------------------------------------------


def _jpeg_keeps(marker: int, body: bytes) -> bool:
    if marker == 0xE0:
        return body.startswith(b"JFIF\x00")
    if marker == 0xE2:
        return body.startswith(ICC_PREFIX)
    if marker == 0xEE:  # Adobe: colour transform flags the decoder needs
        return True
    return not (0xE1 <= marker <= 0xEF or marker == 0xFE)


def _jpeg_name(marker: int, body: bytes) -> str:
    if marker == 0xFE:
        return "COM"
    label = body[:12].split(b"\x00", 1)[0].decode("latin-1", "replace")
    return f"APP{marker - 0xE0} {label}".strip()


def _entropy_end(data: bytes, start: int) -> int:
    """Where the entropy-coded data after an SOS header ends: at the next marker that is
    neither byte stuffing (FF00) nor a restart marker (FFD0-FFD7)."""
    position = start
    while True:
        found = data.find(b"\xff", position)
        if found < 0 or found + 1 >= len(data):
            raise StripError("JPEG: the image data never ends")
        following = data[found + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            position = found + 1 if following == 0xFF else found + 2
            continue
        return found


def strip_jpeg(data: bytes) -> StrippedImage:
    out = bytearray(b"\xff\xd8")
    removed: list[str] = []
    position = 2
    while True:
        if position + 2 > len(data) or data[position] != 0xFF:
            raise StripError(f"JPEG: no marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0xD9:
            out += b"\xff\xd9"
            if position + 2 < len(data):
                removed.append("data after EOI")
            break
        if marker in _JPEG_STANDALONE:
            out += data[position : position + 2]
            position += 2
            continue
        if position + 4 > len(data):
            raise StripError("JPEG: truncated segment header")
        (length,) = struct.unpack_from(">H", data, position + 2)
        end = position + 2 + length
        if length < 2 or end > len(data):
            raise StripError(f"JPEG: segment at byte {position} runs past the end")
        body = data[position + 4 : end]
        if _jpeg_keeps(marker, body):
            out += data[position:end]
        else:
            removed.append(_jpeg_name(marker, body))
            if marker == 0xE1 and body.startswith(EXIF_PREFIX):
                orientation = orientation_of(body[len(EXIF_PREFIX) :])
                if orientation is not None and orientation != 1:
                    block = EXIF_PREFIX + orientation_tiff(orientation)
                    out += b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block
        position = end
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            scan_end = _entropy_end(data, position)
            out += data[position:scan_end]
            position = scan_end
    return StrippedImage(data=bytes(out), content_type="image/jpeg", removed=tuple(removed))


# --- PNG ----------------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def strip_png(data: bytes) -> StrippedImage:
    out = bytearray(_PNG_SIGNATURE)
    removed: list[str] = []
    position = len(_PNG_SIGNATURE)
    while True:
        if position + 12 > len(data):
            raise StripError("PNG: no IEND chunk")
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            raise StripError(f"PNG: chunk {kind!r} runs past the end")
        if kind in _PNG_DROPPED:
            removed.append(kind.decode("latin-1"))
            if kind == b"eXIf":
                orientation = orientation_of(data[position + 8 : position + 8 + length])
                if orientation is not None and orientation != 1:
                    out += _png_chunk(b"eXIf", orientation_tiff(orientation))
        else:
            out += data[position:end]
        position = end
        if kind == b"IEND":
            if position < len(data):
                removed.append("data after IEND")
            break
    return StrippedImage(data=bytes(out), content_type="image/png", removed=tuple(removed))


# --- WebP ---------------------------------------------------------------------------------


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def strip_webp(data: bytes) -> StrippedImage:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end_of_riff = min(len(data), 8 + riff_size)
    chunks: list[tuple[bytes, bytes]] = []
    removed: list[str] = []
    orientation: int | None = None
    position = 12
    while position + 8 <= end_of_riff:
        kind = data[position : position + 4]
        (length,) = struct.unpack_from("<I", data, position + 4)
        body_end = position + 8 + length
        if body_end > end_of_riff:
            raise StripError(f"WebP: chunk {kind!r} runs past the end")
        body = data[position + 8 : body_end]
        if kind in (b"EXIF", b"XMP "):
            removed.append(kind.decode("latin-1").strip())
            if kind == b"EXIF":
                tiff = body[len(EXIF_PREFIX) :] if body.startswith(EXIF_PREFIX) else body
                orientation = orientation_of(tiff)
        else:
            chunks.append((kind, body))
        position = body_end + (length % 2)
    if position < len(data):
        removed.append("data after the RIFF chunk")
    keep_exif = orientation is not None and orientation != 1
    if keep_exif and orientation is not None:
        chunks.append((b"EXIF", orientation_tiff(orientation)))
    rebuilt = bytearray()
    for kind, chunk in chunks:
        if kind == b"VP8X" and chunk:
            flags = chunk[0] & ~(_VP8X_EXIF | _VP8X_XMP)
            chunk = bytes([flags | (_VP8X_EXIF if keep_exif else 0)]) + chunk[1:]
        rebuilt += _riff_chunk(kind, chunk)
    out = b"RIFF" + struct.pack("<I", len(rebuilt) + 4) + b"WEBP" + bytes(rebuilt)
    return StrippedImage(data=out, content_type="image/webp", removed=tuple(removed))


# --- HEIF ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Box:
    kind: bytes
    start: int  # of the header
    body: int  # first byte after the header
    end: int


def _boxes(data: bytes, start: int, end: int) -> list[_Box]:
    boxes: list[_Box] = []
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if size == 1:
            if position + 16 > end:
                raise StripError("HEIF: truncated box header")
            (size,) = struct.unpack_from(">Q", data, position + 8)
            header = 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            raise StripError(f"HEIF: box {kind!r} runs past its parent")
        boxes.append(_Box(kind, position, position + header, position + size))
        position += size
    return boxes


def _metadata_items(data: bytes, iinf: _Box) -> dict[int, str]:
    """Item id → "Exif" or "XMP", from the item info entries (infe version 2 and 3)."""
    version = data[iinf.body]
    count_size = 2 if version == 0 else 4
    first = iinf.body + 4 + count_size
    items: dict[int, str] = {}
    for infe in _boxes(data, first, iinf.end):
        if infe.kind != b"infe" or data[infe.body] < 2:
            continue
        version = data[infe.body]
        position = infe.body + 4
        if version == 2:
            (item_id,) = struct.unpack_from(">H", data, position)
            position += 2
        else:
            (item_id,) = struct.unpack_from(">I", data, position)
            position += 4
        item_type = data[position + 2 : position + 6]
        if item_type == b"Exif":
            items[item_id] = "Exif"
        elif item_type == b"mime":
            rest = data[position + 6 : infe.end]
            content_type = rest.split(b"\x00")[1] if rest.count(b"\x00") >= 2 else b""
            if b"xmp" in content_type.lower() or b"rdf" in content_type.lower():
                items[item_id] = "XMP"
    return items


def _read_uint(data: bytes, position: int, size: int) -> int:
    return int.from_bytes(data[position : position + size], "big") if size else 0


def _item_extents(data: bytes, iloc: _Box, idat: _Box | None) -> dict[int, list[tuple[int, int]]]:
    """Item id → its (file offset, length) extents, from the item location box."""
    version = data[iloc.body]
    position = iloc.body + 4
    offset_size, length_size = data[position] >> 4, data[position] & 0x0F
    base_size = data[position + 1] >> 4
    index_size = data[position + 1] & 0x0F if version in (1, 2) else 0
    position += 2
    count_size = 2 if version < 2 else 4
    count = _read_uint(data, position, count_size)
    position += count_size
    extents: dict[int, list[tuple[int, int]]] = {}
    for _ in range(count):
        id_size = 2 if version < 2 else 4
        item_id = _read_uint(data, position, id_size)
        position += id_size
        method = 0
        if version in (1, 2):
            method = _read_uint(data, position, 2) & 0x0F
            position += 2
        position += 2  # data reference index
        base = _read_uint(data, position, base_size)
        position += base_size
        (extent_count,) = struct.unpack_from(">H", data, position)
        position += 2
        located: list[tuple[int, int]] = []
        for _ in range(extent_count):
            position += index_size
            offset = _read_uint(data, position, offset_size)
            position += offset_size
            length = _read_uint(data, position, length_size)
            position += length_size
            if method == 0:
                located.append((base + offset, length))
            elif method == 1 and idat is not None:
                located.append((idat.body + base + offset, length))
        if position > iloc.end:
            raise StripError("HEIF: the item locations run past their box")
        extents[item_id] = located
    return extents


def strip_heif(data: bytes) -> StrippedImage | None:
    top = _boxes(data, 0, len(data))
    meta = next((box for box in top if box.kind == b"meta"), None)
    if meta is None:
        return None  # not an image file (or an MP4): nothing for this module to do
    children = {box.kind: box for box in _boxes(data, meta.body + 4, meta.end)}
    iinf, iloc = children.get(b"iinf"), children.get(b"iloc")
    if iinf is None or iloc is None:
        raise StripError("HEIF: no item information or locations")
    try:
        items = _metadata_items(data, iinf)
        extents = _item_extents(data, iloc, children.get(b"idat"))
    except (struct.error, IndexError) as error:
        raise StripError(f"HEIF: unreadable item boxes ({error})") from error
    out = bytearray(data)
    removed: list[str] = []
    for item_id, kind in sorted(items.items()):
        for offset, length in extents.get(item_id, []):
            if length == 0 or offset + length > len(data):
                raise StripError(f"HEIF: item {item_id} lies outside the file")
            if kind == "Exif" and length >= 4 + len(EMPTY_TIFF):
                # The item starts with the offset of its TIFF header: 0, then an empty TIFF.
                filler = b"\x00\x00\x00\x00" + EMPTY_TIFF
                replacement = filler + b"\x00" * (length - len(filler))
            else:
                replacement = (b" " if kind == "XMP" else b"\x00") * length
            out[offset : offset + length] = replacement
        removed.append(kind)
    brand = data[8:12]
    content_type = "image/heic" if brand in (b"heic", b"heix", b"hevc", b"hevx") else "image/heif"
    return StrippedImage(data=bytes(out), content_type=content_type, removed=tuple(removed))
