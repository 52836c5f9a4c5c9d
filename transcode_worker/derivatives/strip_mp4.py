"""Lossless metadata removal from MP4/MOV files: a box-level rewrite, no re-encoding.

What a recipient of someone else's video downloads as its `original` (API.md "Privacy of
originals"): the same samples, bit for bit, without the boxes phones fill with location and
device data: `udta` (QuickTime `©xyz` location, `©mak`/`©mod` maker and model, software) and
`meta` (Apple's `keys`/`ilst` with `com.apple.quicktime.location.ISO6709`, make, model) under
`moov` and under each `trak`, plus top-level `udta`, `meta` and XMP `uuid` boxes.

Removing boxes changes sizes: every ancestor's size is rewritten, and when `moov` comes before
`mdat` ("fast start", as phones write) the chunk offsets in every `stco`/`co64` are lowered by
the bytes removed before the data they point at. Fragmented files (`moof`, `mvex`) carry
offsets in places this module does not rewrite: there each removed box is overwritten in place
by a `free` box of the same size, so nothing moves.

The media data is streamed from file to file in chunks; only `moov` is held in memory
(bounded by `MAX_MOOV_BYTES`).
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from transcode_worker.derivatives.types import StripError

MAX_MOOV_BYTES = 64 * 1024 * 1024
COPY_CHUNK_BYTES = 1024 * 1024
XMP_UUID = bytes.fromhex("be7acfcb97a942e89c71999491e3afac")
_METADATA = frozenset({b"udta", b"meta"})
# The boxes on the way from `moov` to the chunk offset tables.
_TO_CHUNK_OFFSETS = {b"moov": b"trak", b"trak": b"mdia", b"mdia": b"minf", b"minf": b"stbl"}


@dataclass(frozen=True)
class Box:
    kind: bytes
    start: int  # of the header
    header: int  # 8, or 16 with a 64-bit size
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def body(self) -> int:
        return self.start + self.header


def _parse_header(head: bytes, position: int, limit: int) -> Box:
    if len(head) < 8:
        raise StripError(f"truncated box header at byte {position}")
    size, kind = struct.unpack_from(">I4s", head)
    header = 8
    if size == 1:
        if len(head) < 16:
            raise StripError(f"truncated 64-bit box header at byte {position}")
        (size,) = struct.unpack_from(">Q", head, 8)
        header = 16
    elif size == 0:
        size = limit - position  # "to the end of the file"
    if size < header or position + size > limit:
        raise StripError(f"box {kind!r} at byte {position} runs past its parent")
    return Box(kind, position, header, position + size)


def top_level_boxes(handle: BinaryIO, file_size: int) -> list[Box]:
    boxes: list[Box] = []
    position = 0
    while position < file_size:
        handle.seek(position)
        box = _parse_header(handle.read(16), position, file_size)
        boxes.append(box)
        position = box.end
    return boxes


def child_boxes(data: bytes, start: int, end: int) -> list[Box]:
    boxes: list[Box] = []
    position = start
    while position + 8 <= end:
        box = _parse_header(data[position : position + 16], position, end)
        boxes.append(box)
        position = box.end
    return boxes


def _box_bytes(kind: bytes, body: bytes) -> bytes:
    size = len(body) + 8
    if size <= 0xFFFFFFFF:
        return struct.pack(">I4s", size, kind) + body
    return struct.pack(">I4sQ", 1, kind, size + 8) + body


def _free_box(size: int) -> bytes:
    """A `free` box of exactly `size` bytes (every removed box is at least 8)."""
    if size <= 0xFFFFFFFF:
        return struct.pack(">I4s", size, b"free") + b"\x00" * (size - 8)
    return struct.pack(">I4sQ", 1, b"free", size) + b"\x00" * (size - 16)


def _name(box: Box) -> str:
    return box.kind.decode("latin-1")


def _rewrite(data: bytes, box: Box, *, blank: bool, removed: list[str], path: str) -> bytes:
    """`box` (moov or trak) without its metadata children; trak children recursed."""
    body = bytearray()
    for child in child_boxes(data, box.body, box.end):
        where = f"{path}/{_name(child)}"
        if child.kind in _METADATA:
            removed.append(where)
            if blank:
                body += _free_box(child.size)
            continue
        if child.kind == b"trak":
            body += _rewrite(data, child, blank=blank, removed=removed, path=where)
        else:
            body += data[child.start : child.end]
    if blank:
        # Same size as before: keep the original header (a 64-bit one stays 64-bit).
        return data[box.start : box.body] + bytes(body)
    return _box_bytes(box.kind, bytes(body))


def _chunk_offset_tables(moov: bytearray) -> list[Box]:
    """Every `stco` and `co64` box of a (rewritten) moov, with positions in `moov`."""
    found: list[Box] = []

    def walk(parent: Box) -> None:
        for child in child_boxes(bytes(moov), parent.body, parent.end):
            if child.kind in (b"stco", b"co64"):
                found.append(child)
            elif _TO_CHUNK_OFFSETS.get(parent.kind) == child.kind or child.kind == b"stbl":
                walk(child)

    root = _parse_header(bytes(moov[:16]), 0, len(moov))
    walk(root)
    return found


def _shift_offsets(moov: bytearray, removals: list[tuple[int, int]]) -> None:
    """Lower every chunk offset by the bytes removed before it; `removals` are (original
    position, bytes removed) sorted by position."""
    if not removals:
        return
    positions = [position for position, _ in removals]
    totals: list[int] = []
    running = 0
    for _, removed in removals:
        running += removed
        totals.append(running)

    def shifted(offset: int) -> int:
        index = bisect_left(positions, offset)  # removals strictly before the offset
        return offset - (totals[index - 1] if index else 0)

    for table in _chunk_offset_tables(moov):
        (count,) = struct.unpack_from(">I", moov, table.body + 4)
        width, fmt = (4, ">I") if table.kind == b"stco" else (8, ">Q")
        first = table.body + 8
        if first + count * width > table.end:
            raise StripError(f"{_name(table)} lists more entries than it holds")
        for index in range(count):
            at = first + index * width
            (offset,) = struct.unpack_from(fmt, moov, at)
            struct.pack_into(fmt, moov, at, shifted(offset))


def _copy(source: BinaryIO, target: BinaryIO, start: int, end: int) -> None:
    source.seek(start)
    remaining = end - start
    while remaining > 0:
        chunk = source.read(min(COPY_CHUNK_BYTES, remaining))
        if not chunk:
            raise StripError("the file ended early")
        target.write(chunk)
        remaining -= len(chunk)


@dataclass(frozen=True)
class StrippedVideo:
    content_type: str
    removed: tuple[str, ...]


def strip_mp4(source: Path, target: Path) -> StrippedVideo | None:
    """Write `source` without location and maker metadata to `target`.

    None when `source` is not an ISO media file (WebM) or carries none of those boxes (then the
    original itself is what everyone downloads)."""
    file_size = source.stat().st_size
    with source.open("rb") as handle:
        if handle.read(8)[4:8] != b"ftyp":
            return None
        top = top_level_boxes(handle, file_size)
        moovs = [box for box in top if box.kind == b"moov"]
        if len(moovs) != 1:
            raise StripError(f"{len(moovs)} moov boxes (exactly one expected)")
        moov = moovs[0]
        if moov.size > MAX_MOOV_BYTES:
            raise StripError(f"moov is {moov.size} bytes (at most {MAX_MOOV_BYTES} handled)")
        handle.seek(moov.start)
        moov_data = handle.read(moov.size)
        handle.seek(0)
        brand = handle.read(12)[8:12]
        # Offsets may hide in fragments: overwrite in place there instead of removing.
        fragmented = any(box.kind in (b"moof", b"mfra", b"sidx") for box in top) or any(
            child.kind == b"mvex" for child in child_boxes(moov_data, moov.header, moov.size)
        )
        relative = Box(moov.kind, 0, moov.header, moov.size)
        removed: list[str] = []
        new_moov = bytearray(
            _rewrite(moov_data, relative, blank=fragmented, removed=removed, path="moov")
        )
        dropped_top = [box for box in top if box.kind != b"moov" and _top_metadata(handle, box)]
        removed.extend(_name(box) for box in dropped_top)
        if not removed:
            return None
        removals = sorted(
            [(box.start, box.size) for box in dropped_top]
            + [(moov.start, moov.size - len(new_moov))]
        )
        if not fragmented:
            _shift_offsets(new_moov, [(at, size) for at, size in removals if size])
        with target.open("wb") as out:
            for box in top:
                if box.kind == b"moov":
                    out.write(new_moov)
                elif box in dropped_top:
                    if fragmented:
                        out.write(_free_box(box.size))
                else:
                    _copy(handle, out, box.start, box.end)
    content_type = "video/quicktime" if brand == b"qt  " else "video/mp4"
    return StrippedVideo(content_type=content_type, removed=tuple(removed))


def strip_video(source: Path, target: Path) -> str | None:
    """`strip_mp4` with the signature every strip function has: the content type written."""
    stripped = strip_mp4(source, target)
    return None if stripped is None else stripped.content_type


def _top_metadata(handle: BinaryIO, box: Box) -> bool:
    if box.kind in _METADATA:
        return True
    if box.kind != b"uuid":
        return False
    handle.seek(box.body)
    return handle.read(16) == XMP_UUID
