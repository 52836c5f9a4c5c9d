import hashlib
import os
from dataclasses import dataclass

import pytest

from shared.content_types import SNIFF_BYTES
from transcode_worker.verify import (
    CHECKSUM_MISMATCH,
    SIZE_MISMATCH,
    TYPE_MISMATCH,
    StreamVerifier,
    Verified,
    mismatch,
)

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40


@dataclass(frozen=True)
class Slot:
    size: int
    sha256: str
    content_type: str


def slot_for(data: bytes, content_type: str = "image/jpeg") -> Slot:
    return Slot(size=len(data), sha256=hashlib.sha256(data).hexdigest(), content_type=content_type)


def verify(data: bytes, chunk: int) -> Verified:
    verifier = StreamVerifier()
    for start in range(0, len(data), chunk):
        verifier.feed(data[start : start + chunk])
    return verifier.result()


@pytest.mark.parametrize("chunk", [1, 7, SNIFF_BYTES, 1000, 1 << 20])
def test_chunking_does_not_change_the_result(chunk: int) -> None:
    data = os.urandom(5000)
    result = verify(data, chunk)
    assert result.length == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.head == data[:SNIFF_BYTES]
    assert result.complete


def test_short_streams_keep_everything_as_head() -> None:
    assert verify(b"abc", 1).head == b"abc"
    assert verify(b"", 1) == Verified(length=0, sha256=hashlib.sha256().hexdigest(), head=b"")


def test_matching_bytes_pass() -> None:
    assert mismatch(slot_for(JPEG), verify(JPEG, 100)) is None


def test_length_is_checked_first() -> None:
    # Everything is wrong: the length is what gets reported.
    slot = Slot(size=len(JPEG) + 1, sha256="0" * 64, content_type="image/png")
    problem = mismatch(slot, verify(JPEG, 100))
    assert problem is not None
    assert problem[0] == SIZE_MISMATCH
    assert str(len(JPEG)) in problem[1]


def test_checksum_is_checked_before_type() -> None:
    slot = Slot(size=len(JPEG), sha256="0" * 64, content_type="image/png")
    problem = mismatch(slot, verify(JPEG, 100))
    assert problem is not None
    assert problem[0] == CHECKSUM_MISMATCH


def test_type_is_checked_last() -> None:
    problem = mismatch(slot_for(JPEG, "image/png"), verify(JPEG, 100))
    assert problem is not None
    assert problem[0] == TYPE_MISMATCH
    assert "image/png" in problem[1]


def test_right_hash_of_a_lying_text_file() -> None:
    data = b"\x00\x01binary pretending to be text"
    problem = mismatch(slot_for(data, "text/plain"), verify(data, 4))
    assert problem is not None
    assert problem[0] == TYPE_MISMATCH


def test_stream_stopped_early_is_a_size_mismatch() -> None:
    verifier = StreamVerifier()
    verifier.feed(JPEG)
    slot = slot_for(JPEG[:10])
    problem = mismatch(slot, verifier.result(complete=False))
    assert problem is not None
    assert problem[0] == SIZE_MISMATCH
    assert "more than 10" in problem[1]


def test_shorter_upload_is_a_size_mismatch() -> None:
    problem = mismatch(slot_for(JPEG), verify(JPEG[:-1], 100))
    assert problem is not None
    assert problem[0] == SIZE_MISMATCH
