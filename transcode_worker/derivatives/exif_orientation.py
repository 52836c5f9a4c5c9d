"""The one EXIF tag a stripped image keeps: its orientation (pure, no I/O).

Phones store photos sideways and say how to turn them in EXIF tag 0x0112; dropping the whole
EXIF block would show recipients a rotated photo. So the strip functions read that tag and
write it back as a minimal TIFF structure holding nothing else (no camera, no GPS, no dates).
"""

from __future__ import annotations

import struct

ORIENTATION_TAG = 0x0112
_SHORT = 3
# A TIFF structure (as EXIF stores it) whose IFD0 holds nothing: for containers that must keep
# an EXIF item in place (HEIF), its content can be replaced by this.
EMPTY_TIFF = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x00" + b"\x00\x00\x00\x00"


def orientation_of(tiff: bytes) -> int | None:
    """The Orientation (1-8) of a TIFF structure (EXIF without its `Exif\\0\\0` prefix);
    None when absent, out of range or unreadable (an unreadable block is dropped anyway)."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    try:
        (magic, ifd) = struct.unpack_from(order + "HI", tiff, 2)
        if magic != 42:
            return None
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for index in range(min(count, 512)):
            tag, kind, number = struct.unpack_from(order + "HHI", tiff, ifd + 2 + 12 * index)
            if tag == ORIENTATION_TAG and kind == _SHORT and number == 1:
                (value,) = struct.unpack_from(order + "H", tiff, ifd + 2 + 12 * index + 8)
                return value if 1 <= value <= 8 else None
    except struct.error:
        return None
    return None


def orientation_tiff(orientation: int) -> bytes:
    """A big-endian TIFF structure whose IFD0 holds only Orientation = `orientation`."""
    if not 1 <= orientation <= 8:
        raise ValueError(f"not an EXIF orientation: {orientation}")
    entry = struct.pack(">HHIHH", ORIENTATION_TAG, _SHORT, 1, orientation, 0)
    return b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + entry + b"\x00\x00\x00\x00"
