"""The commit step's judgement of what arrived, without I/O.

`StreamVerifier` is fed the object chunk by chunk (it keeps the running SHA-256, the length and
the first `SNIFF_BYTES` bytes, never the object), and `mismatch` compares its result with the
upload slot. The checks run in a fixed order: length, then checksum, then real type, so the
cheapest and least ambiguous reason is the one reported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from shared.content_types import SNIFF_BYTES, looks_like

SIZE_MISMATCH = "size_mismatch"
CHECKSUM_MISMATCH = "checksum_mismatch"
TYPE_MISMATCH = "type_mismatch"
MISMATCH_CODES = (SIZE_MISMATCH, CHECKSUM_MISMATCH, TYPE_MISMATCH)


class Declared(Protocol):
    """What the client declared when it asked for the upload slot (a `MediaRecord` is one)."""

    @property
    def size(self) -> int: ...

    @property
    def sha256(self) -> str: ...

    @property
    def content_type(self) -> str: ...


@dataclass(frozen=True, kw_only=True)
class Verified:
    length: int
    sha256: str
    head: bytes
    # False when reading stopped early (more bytes arrived than the slot allows), in which
    # case `length` is a lower bound and `sha256` covers only what was read.
    complete: bool = True


class StreamVerifier:
    """Length, SHA-256 and leading bytes of a stream, in memory bounded by one chunk."""

    def __init__(self, *, sniff_bytes: int = SNIFF_BYTES) -> None:
        self._hash = hashlib.sha256()
        self._length = 0
        self._sniff_bytes = sniff_bytes
        self._head = bytearray()

    @property
    def length(self) -> int:
        return self._length

    def feed(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._length += len(chunk)
        missing = self._sniff_bytes - len(self._head)
        if missing > 0:
            # The head may straddle several small chunks.
            self._head += chunk[:missing]

    def result(self, *, complete: bool = True) -> Verified:
        return Verified(
            length=self._length,
            sha256=self._hash.hexdigest(),
            head=bytes(self._head),
            complete=complete,
        )


def mismatch(declared: Declared, verified: Verified) -> tuple[str, str] | None:
    """The first way the bytes differ from the slot, as (error code, human sentence), or None."""
    if not verified.complete or verified.length != declared.size:
        received = f"more than {declared.size}" if not verified.complete else str(verified.length)
        return (
            SIZE_MISMATCH,
            f"the upload has {received} bytes but {declared.size} were declared",
        )
    if verified.sha256 != declared.sha256:
        return CHECKSUM_MISMATCH, "the SHA-256 of the uploaded bytes differs from the declared one"
    if not looks_like(declared.content_type, verified.head):
        return (
            TYPE_MISMATCH,
            f"the uploaded bytes are not {declared.content_type} (their signature differs)",
        )
    return None
