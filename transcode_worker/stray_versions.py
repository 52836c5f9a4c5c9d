"""Bytes that no slot may yield, deleted as soon as their storage event arrives.

An upload URL stays valid for its whole lifetime, and storage keeps every PUT as a new version
of `o/{media_id}`: the same URL can store any number of objects, after the slot was committed,
abandoned or expired. A slot yields at most one usable object, the version the commit step
pinned; every other version of its key is a stray: never verified, never served, and deleted
here. Bytes for a slot whose record is gone (abandoned) are strays too.

Never deleted: the pinned version, and any version a blob points at (a deleted media's
original may still be the shared copy of deduplicated media). Without a version in the event
(the emulator sends none; S3 always does on a versioned bucket) every version of the key is
examined. Deletion is best effort: the sweeper and the lifecycle rules are the backstop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from typing import Any, Literal

from shared import keys
from shared.media_records import MediaRecords
from shared.models import MediaType
from transcode_worker.metrics import WorkerMetrics

log = logging.getLogger("ferry.worker.strays")

# Why a version was deleted: another version of a committed slot; bytes for an abandoned
# slot (no record); bytes that landed after the slot expired (`metrics.DISCARD_REASONS`).
DiscardReason = Literal["extra_version", "abandoned", "expired"]


class StrayVersions:
    def __init__(
        self,
        *,
        s3: Any,
        bucket: str,
        store: MediaRecords,
        metrics: WorkerMetrics,
        read_chunk_bytes: int,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._store = store
        self._metrics = metrics
        self._read_chunk_bytes = read_chunk_bytes

    async def discard(
        self, key: str, *, announced: str | None, keep: str | None, reason: DiscardReason
    ) -> int:
        """Delete the version of `key` an event announced (every version, when it named none)
        unless it is `keep` or a blob's; how many were deleted."""
        deleted = 0
        for version in await self._candidates(key, announced):
            if version == keep:
                continue
            try:
                if await self._held_by_blob(key, version):
                    continue
                await self._s3.delete_object(Bucket=self._bucket, Key=key, VersionId=version)
            except Exception:
                log.warning(
                    "could not delete a stray version",
                    exc_info=True,
                    extra={"key": key, "version_id": version, "reason": reason},
                )
                continue
            deleted += 1
            self._metrics.discarded_objects.labels(reason).inc()
            log.warning(
                "stray upload deleted", extra={"key": key, "version_id": version, "reason": reason}
            )
        return deleted

    async def _candidates(self, key: str, announced: str | None) -> list[str]:
        if announced is not None:
            return [announced]
        versions: list[str] = []
        try:
            paginator = self._s3.get_paginator("list_object_versions")
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=key):
                versions.extend(
                    str(entry["VersionId"])
                    for entry in page.get("Versions", [])
                    if entry.get("Key") == key and entry.get("VersionId") not in (None, "null")
                )
        except Exception:
            log.warning("could not list the versions of %s", key, exc_info=True)
            return []
        return versions

    async def _held_by_blob(self, key: str, version: str) -> bool:
        """Whether some blob's bytes are exactly this version (then it is nobody's stray)."""
        sha256 = await self._sha256_of(key, version)
        for family in MediaType:
            blob = await self._store.get_blob(keys.blob_key(family.value, sha256))
            if blob is not None and blob.object_key == key and blob.version_id == version:
                return True
        return False

    async def _sha256_of(self, key: str, version: str) -> str:
        """The version's SHA-256: the checksum storage kept from the signed PUT, or, when it
        kept none, the bytes hashed as they stream by."""
        head = await self._s3.head_object(
            Bucket=self._bucket, Key=key, VersionId=version, ChecksumMode="ENABLED"
        )
        checksum = head.get("ChecksumSHA256")
        if isinstance(checksum, str) and "-" not in checksum:  # "-N": a multipart composite
            return base64.b64decode(checksum).hex()
        response = await self._s3.get_object(Bucket=self._bucket, Key=key, VersionId=version)
        digest = hashlib.sha256()
        body = response["Body"]
        async with body:
            while chunk := await body.read(self._read_chunk_bytes):
                await asyncio.to_thread(digest.update, chunk)
        return digest.hexdigest()
