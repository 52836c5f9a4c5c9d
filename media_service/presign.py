"""Signed single-PUT URLs without the S3 client's per-call machinery (issue 14, item 2).

`generate_presigned_url("put_object", ...)` resolves the endpoint ruleset, serializes the
parameters and runs the client's event hooks on every call: ~0.35 ms of a slot's CPU. A slot's
URL differs from the last one only in its key, type, length, checksum, expiry and time, so this
signs with botocore's own `S3SigV4QueryAuth` over a URL built from the bucket's address, which
botocore resolves once.

It is an optimisation only, never a different answer. On first use it signs a probe key both
ways at the same instant and keeps the fast path only if the URLs are byte-identical; any
difference (an addressing style, endpoint rule or credential kind it does not mirror) and every
URL comes from botocore, as before. `tests/unit/test_presign.py` pins the equivalence.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from botocore.auth import SIGV4_TIMESTAMP, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

log = logging.getLogger("ferry.media.presign")

PROBE_KEY = "o/m_presign-probe"


class _SignedAt(S3SigV4QueryAuth):
    """botocore's S3 query signer at a given instant (it otherwise reads the clock itself)."""

    def __init__(self, credentials: Any, region: str, expires: int, timestamp: str) -> None:
        super().__init__(credentials, "s3", region, expires=expires)
        self._timestamp = timestamp

    def add_auth(self, request: AWSRequest) -> None:
        # `SigV4Auth.add_auth` with the instant given; the steps are botocore's own.
        signer: Any = self  # the stubs leave out botocore's private steps
        request.context["timestamp"] = self._timestamp
        signer._modify_request_before_signing(request)
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        signer._inject_signature_to_request(request, self.signature(string_to_sign, request))


def _put_params(
    bucket: str, key: str, content_type: str, size: int, checksum: str
) -> dict[str, Any]:
    return {
        "Bucket": bucket,
        "Key": key,
        "ContentType": content_type,
        "ContentLength": size,
        "ChecksumSHA256": checksum,
    }


class PutUrlSigner:
    """PUT URLs for keys of one bucket, as `client.generate_presigned_url("put_object")`
    makes them."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket
        self._region: str = client.meta.region_name
        # Decided on first use: the URL up to the key when the fast path matches botocore,
        # "" when it does not (botocore signs everything).
        self._prefix: str | None = None

    @property
    def fast(self) -> bool:
        """Whether URLs are signed here (known after the first one; False until then)."""
        return bool(self._prefix)

    async def sign(
        self,
        key: str,
        *,
        content_type: str,
        size: int,
        checksum: str,
        ttl_seconds: int,
        now: datetime | None = None,
    ) -> str:
        if self._prefix is None:
            self._prefix = await self._probe()
        credentials = await self._credentials()
        if not self._prefix or credentials is None:
            return await self._botocore(key, content_type, size, checksum, ttl_seconds)
        moment = (now or datetime.now(UTC)).strftime(SIGV4_TIMESTAMP)
        return self.signed_url(
            self._prefix, key, content_type, size, checksum, ttl_seconds, credentials, moment
        )

    def signed_url(
        self,
        prefix: str,
        key: str,
        content_type: str,
        size: int,
        checksum: str,
        ttl_seconds: int,
        credentials: Any,
        timestamp: str,
    ) -> str:
        # S3 keys are percent-encoded as botocore encodes a greedy URI label.
        request = AWSRequest(
            method="PUT",
            url=prefix + quote(key, safe="/~"),
            headers={
                "Content-Type": content_type,
                "Content-Length": str(size),
                "x-amz-checksum-sha256": checksum,
            },
        )
        _SignedAt(credentials, self._region, ttl_seconds, timestamp).add_auth(request)
        return str(request.url)

    async def _botocore(
        self, key: str, content_type: str, size: int, checksum: str, ttl_seconds: int
    ) -> str:
        return await self._client.generate_presigned_url(
            "put_object",
            Params=_put_params(self._bucket, key, content_type, size, checksum),
            ExpiresIn=ttl_seconds,
        )

    async def _credentials(self) -> Any:
        """The client's credentials as they are now (refreshable ones refresh here)."""
        signer = getattr(self._client, "_request_signer", None)
        credentials = getattr(signer, "_credentials", None)
        if credentials is None:
            return None
        return await credentials.get_frozen_credentials()

    async def _probe(self) -> str:
        """The URL prefix if the fast path signs a probe exactly as botocore does, else ""."""
        checksum = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="  # SHA-256 of nothing
        expected = await self._botocore(PROBE_KEY, "image/jpeg", 1, checksum, 300)
        base, _, query = expected.partition("?")
        encoded_key = quote(PROBE_KEY, safe="/~")
        credentials = await self._credentials()
        timestamp = parse_qs(query).get("X-Amz-Date", [""])[0]
        if not base.endswith(encoded_key) or credentials is None or not timestamp:
            log.info("presigned PUT URLs come from botocore (unusual endpoint or credentials)")
            return ""
        prefix = base[: -len(encoded_key)]
        mine = self.signed_url(
            prefix, PROBE_KEY, "image/jpeg", 1, checksum, 300, credentials, timestamp
        )
        if mine != expected:
            log.warning("presigned PUT URLs come from botocore: the fast path differs from it")
            return ""
        return prefix
