"""S3 for media lifetime: delete object versions, Object Lock legal holds, scans of the bucket.

Every delete names a version: in a versioned bucket, a delete without one only hides the bytes.
A version under legal hold is refused by S3 itself; that refusal is reported, never retried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.aws import error_code

log = logging.getLogger("ferry.media.lifecycle")

# What S3 answers when Object Lock refuses a delete.
LOCKED_CODES = frozenset({"AccessDenied", "InvalidRequest"})


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str | None
    size: int
    last_modified: datetime
    delete_marker: bool = False


@dataclass(frozen=True)
class MultipartSession:
    key: str
    upload_id: str
    initiated: datetime


@dataclass
class Deleted:
    objects: int = 0
    bytes: int = 0
    refused: int = 0  # held versions Object Lock kept

    def add(self, other: Deleted) -> None:
        self.objects += other.objects
        self.bytes += other.bytes
        self.refused += other.refused


class LifecycleBucket:
    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket

    async def versions(self, prefix: str) -> list[ObjectVersion]:
        """Every version (and delete marker) under `prefix`."""
        found: list[ObjectVersion] = []
        cursor: dict[str, str] = {}
        while True:
            page, cursor_next = await self.versions_page(prefix, cursor, limit=1000)
            found.extend(page)
            if cursor_next is None:
                return found
            cursor = cursor_next

    async def versions_page(
        self, prefix: str, cursor: dict[str, str], *, limit: int
    ) -> tuple[list[ObjectVersion], dict[str, str] | None]:
        """One page of versions from `cursor` (KeyMarker, VersionIdMarker); None when done."""
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": limit}
        if cursor.get("key"):
            request["KeyMarker"] = cursor["key"]
            if cursor.get("version"):
                request["VersionIdMarker"] = cursor["version"]
        response = await self._s3.list_object_versions(**request)
        page = [
            ObjectVersion(
                key=item["Key"],
                version_id=item.get("VersionId"),
                size=int(item.get("Size", 0)),
                last_modified=item["LastModified"],
            )
            for item in response.get("Versions", [])
        ]
        page += [
            ObjectVersion(
                key=item["Key"],
                version_id=item.get("VersionId"),
                size=0,
                last_modified=item["LastModified"],
                delete_marker=True,
            )
            for item in response.get("DeleteMarkers", [])
        ]
        if not response.get("IsTruncated"):
            return page, None
        return page, {
            "key": response.get("NextKeyMarker", ""),
            "version": response.get("NextVersionIdMarker", ""),
        }

    async def delete(self, versions: list[ObjectVersion]) -> Deleted:
        done = Deleted()
        for version in versions:
            params: dict[str, Any] = {"Bucket": self.bucket, "Key": version.key}
            if version.version_id:
                params["VersionId"] = version.version_id
            try:
                await self._s3.delete_object(**params)
            except Exception as error:
                code = error_code(error)
                if code in ("NoSuchKey", "NoSuchVersion", "404"):
                    continue  # someone (another sweeper) was first
                if code in LOCKED_CODES:
                    log.warning("object lock kept %s (%s)", version.key, version.version_id)
                    done.refused += 1
                    continue
                raise
            done.objects += 1
            done.bytes += version.size
        return done

    async def delete_prefix(self, prefix: str) -> Deleted:
        return await self.delete(await self.versions(prefix))

    async def delete_key(self, key: str, version_id: str | None, *, size: int) -> Deleted:
        """One version of one original (its size from the record: no listing, which the
        Media Service's role may not do outside `d/`)."""
        when = datetime.now(UTC)
        return await self.delete([ObjectVersion(key, version_id, size, when)])

    async def set_legal_hold(self, key: str, version_id: str | None, *, on: bool) -> None:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "LegalHold": {"Status": "ON" if on else "OFF"},
        }
        if version_id:
            params["VersionId"] = version_id
        await self._s3.put_object_legal_hold(**params)

    async def legal_hold(self, key: str, version_id: str | None) -> bool:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        try:
            response = await self._s3.get_object_legal_hold(**params)
        except Exception as error:
            if error_code(error) in ("NoSuchObjectLockConfiguration", "InvalidRequest"):
                return False
            raise
        return bool(response.get("LegalHold", {}).get("Status") == "ON")

    async def storage_class(self, key: str, version_id: str | None) -> tuple[str, bool]:
        """(storage class, restored copy available) of one version."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        response = await self._s3.head_object(**params)
        restore = str(response.get("Restore", ""))
        return str(response.get("StorageClass") or "STANDARD"), 'ongoing-request="false"' in restore

    async def multipart_page(
        self, prefix: str, cursor: dict[str, str], *, limit: int
    ) -> tuple[list[MultipartSession], dict[str, str] | None]:
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxUploads": limit}
        if cursor.get("key"):
            request["KeyMarker"] = cursor["key"]
            if cursor.get("upload"):
                request["UploadIdMarker"] = cursor["upload"]
        response = await self._s3.list_multipart_uploads(**request)
        page = [
            MultipartSession(key=u["Key"], upload_id=u["UploadId"], initiated=u["Initiated"])
            for u in response.get("Uploads", [])
        ]
        if not response.get("IsTruncated"):
            return page, None
        return page, {
            "key": response.get("NextKeyMarker", ""),
            "upload": response.get("NextUploadIdMarker", ""),
        }

    async def abort(self, session: MultipartSession) -> None:
        try:
            await self._s3.abort_multipart_upload(
                Bucket=self.bucket, Key=session.key, UploadId=session.upload_id
            )
        except Exception as error:
            if error_code(error) not in ("NoSuchUpload", "404"):
                raise
