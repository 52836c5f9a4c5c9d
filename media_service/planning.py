"""Pure upload planning: single or multipart, part sizes, part lengths, dedup challenges."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass

from media_service.settings import MIB, S3_MAX_PARTS, S3_MIN_PART_BYTES


@dataclass(frozen=True)
class SinglePlan:
    size: int


@dataclass(frozen=True)
class MultipartPlan:
    size: int
    part_size: int
    part_count: int

    def part_length(self, part_number: int) -> int:
        """The exact length of one part: every part is `part_size` but the last."""
        if not 1 <= part_number <= self.part_count:
            raise ValueError(f"part {part_number} is outside 1..{self.part_count}")
        if part_number < self.part_count:
            return self.part_size
        return self.size - self.part_size * (self.part_count - 1)


def plan_upload(size: int, *, threshold: int, part_size: int) -> SinglePlan | MultipartPlan:
    """Single PUT below `threshold`; at or above it, parts of `part_size` (grown, in whole MiB,
    when S3's 10,000-part cap would otherwise be exceeded)."""
    if size < 1:
        raise ValueError("an upload has at least one byte")
    if size < threshold:
        return SinglePlan(size=size)
    part_size = max(part_size, S3_MIN_PART_BYTES)
    if math.ceil(size / part_size) > S3_MAX_PARTS:
        part_size = math.ceil(size / S3_MAX_PARTS / MIB) * MIB
    return MultipartPlan(size=size, part_size=part_size, part_count=math.ceil(size / part_size))


@dataclass(frozen=True)
class ChallengeRange:
    offset: int
    length: int
    nonce: str


def new_challenge(size: int, proof_bytes: int) -> ChallengeRange:
    """A random range of the content and a fresh nonce: knowing the hash is not enough."""
    length = min(proof_bytes, size)
    offset = secrets.randbelow(size - length + 1)
    return ChallengeRange(offset=offset, length=length, nonce=secrets.token_hex(16))


def expected_proof(nonce_hex: str, content_range: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(nonce_hex) + content_range).hexdigest()


def proof_matches(nonce_hex: str, content_range: bytes, presented: str) -> bool:
    expected = expected_proof(nonce_hex, content_range).encode()
    return hmac.compare_digest(expected, presented.lower().encode("utf-8", "replace"))
