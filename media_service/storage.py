"""S3 for the Media Service: signing, multipart bookkeeping and the dedup proof's ranged read.

Nothing here streams media bytes: presigned URLs send clients straight to storage.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from media_service.cdn import CloudFrontUrlSigner
from media_service.presign import PutUrlSigner
from shared.aws import error_code
from shared.errors import Conflict, Unprocessable
from shared.lifecycle import RESTORE_NEEDED_CLASSES
from shared.models import ReceivedPart

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client


@dataclass(frozen=True)
class SignedRequest:
    url: str
    headers: dict[str, str]


def sha256_hex_to_base64(sha256_hex: str) -> str:
    """`x-amz-checksum-sha256` carries the digest in base64, the contract in hex."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii")


class MediaBucket:
    """`presigner`: an S3 client used only to sign URLs (one built with the endpoint clients
    reach; default `s3`). `cdn`: when set, download URLs are signed for CloudFront instead."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        *,
        presigner: S3Client | None = None,
        cdn: CloudFrontUrlSigner | None = None,
    ) -> None:
        self._s3 = s3
        self._presigner = presigner if presigner is not None else s3
        # Every slot signs one PUT: the same URLs, without the client's per-call machinery.
        self._put_urls = PutUrlSigner(self._presigner, bucket)
        self._cdn = cdn
        self.bucket = bucket

    async def sign_put(
        self, key: str, *, content_type: str, size: int, sha256_hex: str, ttl_seconds: int
    ) -> SignedRequest:
        """A PUT URL for one key whose signature covers type, exact length and SHA-256,
        so real S3 refuses any other bytes."""
        checksum = sha256_hex_to_base64(sha256_hex)
        url = await self._put_urls.sign(
            key,
            content_type=content_type,
            size=size,
            checksum=checksum,
            ttl_seconds=ttl_seconds,
        )
        return SignedRequest(
            url=url,
            headers={
                "Content-Type": content_type,
                "Content-Length": str(size),
                "x-amz-checksum-sha256": checksum,
            },
        )

    async def sign_post(
        self, key: str, *, content_type: str, size: int, ttl_seconds: int
    ) -> tuple[str, dict[str, str]]:
        """A browser form upload (POST) to one key, of exactly `size` bytes of this type: what
        Uppy's single uploads send. The policy cannot carry the SHA-256; the worker's commit step
        hashes every upload anyway, so other bytes never become a usable media."""
        post = await self._presigner.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", size, size]],
            ExpiresIn=ttl_seconds,
        )
        return str(post["url"]), {name: str(value) for name, value in post["fields"].items()}

    async def start_multipart(self, key: str, *, content_type: str) -> str:
        response = await self._s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, ContentType=content_type
        )
        return str(response["UploadId"])

    async def sign_part(
        self, key: str, *, upload_id: str, part_number: int, length: int, ttl_seconds: int
    ) -> SignedRequest:
        url = await self._presigner.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "UploadId": upload_id,
                "PartNumber": part_number,
                "ContentLength": length,
            },
            ExpiresIn=ttl_seconds,
        )
        return SignedRequest(url=url, headers={"Content-Length": str(length)})

    async def received_parts(self, key: str, *, upload_id: str) -> list[ReceivedPart]:
        parts: list[ReceivedPart] = []
        marker = 0
        while True:
            try:
                response = await self._s3.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            except Exception as error:
                if error_code(error) == "NoSuchUpload":
                    raise Conflict(
                        "this multipart upload is no longer open", code="invalid_state"
                    ) from error
                raise
            parts.extend(
                ReceivedPart(part_number=part["PartNumber"], size=part["Size"], etag=part["ETag"])
                for part in response.get("Parts", [])
            )
            if not response.get("IsTruncated"):
                return parts
            marker = int(response["NextPartNumberMarker"])

    async def complete_multipart(
        self, key: str, *, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        try:
            await self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]
                },
            )
        except Exception as error:
            code = error_code(error)
            if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML"):
                raise Unprocessable(
                    f"storage refused the parts ({code}): upload every part, then send "
                    "each part's number and ETag",
                    code="invalid_parts",
                ) from error
            if code == "NoSuchUpload":
                raise Conflict(
                    "this multipart upload is no longer open", code="invalid_state"
                ) from error
            raise

    async def abort_multipart(self, key: str, *, upload_id: str) -> None:
        try:
            await self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as error:
            if error_code(error) not in ("NoSuchUpload", "404"):
                raise

    async def read_range(
        self, key: str, *, version_id: str | None, offset: int, length: int
    ) -> bytes:
        """The dedup proof's one small ranged read (at most `dedup_proof_bytes`)."""
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Range": f"bytes={offset}-{offset + length - 1}",
        }
        if version_id:
            params["VersionId"] = version_id
        response = await self._s3.get_object(**params)
        body = response["Body"]
        async with body:  # closes the connection whatever happens
            return bytes(await body.read())

    async def read_text(self, key: str, *, limit: int) -> str:
        """A small text object (an HLS playlist): never media bytes, and never over `limit`."""
        response = await self._s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{limit}")
        body = response["Body"]
        async with body:
            data = bytes(await body.read())
        if len(data) > limit:
            raise ValueError(f"{key} is larger than {limit} bytes")
        return data.decode("utf-8")

    async def sign_get(
        self,
        key: str,
        *,
        version_id: str | None,
        ttl_seconds: int,
        content_type: str | None = None,
        download_name: str | None = None,
    ) -> str:
        if self._cdn is not None and download_name is None:
            # The CDN serves the key's current version with its stored headers (no version pin,
            # no overrides: docs/deploy.md says why that is safe). A named download (a document)
            # keeps S3's signed URL for its `attachment` disposition.
            expires_at = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
            # An RSA signature is ~1 ms of CPU; a playlist asks for hundreds: off the loop.
            return await asyncio.to_thread(self._cdn.sign, key, expires_at)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            # Pinned to the verified version: a later overwrite of the key is never served.
            params["VersionId"] = version_id
        if content_type:
            params["ResponseContentType"] = content_type
        if download_name:
            params["ResponseContentDisposition"] = (
                f"attachment; filename*=UTF-8''{quote(download_name, safe='')}"
            )
        return str(
            await self._presigner.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=ttl_seconds
            )
        )

    async def archived(self, key: str, *, version_id: str | None) -> bool:
        """Whether a version sits in a class that needs a restore before a GET (and has no
        restored copy): GLACIER or DEEP_ARCHIVE. One HEAD; asked only when that can be."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        response = await self._s3.head_object(**params)
        restored = 'ongoing-request="false"' in str(response.get("Restore", ""))
        return response.get("StorageClass") in RESTORE_NEEDED_CLASSES and not restored

    async def delete_version(self, key: str, *, version_id: str | None) -> None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        await self._s3.delete_object(**params)

    async def check(self) -> None:
        """Readiness: the bucket answers. Not HeadBucket: S3 authorizes that as s3:ListBucket,
        which this service's role deliberately lacks."""
        await self._s3.get_bucket_versioning(Bucket=self.bucket)
