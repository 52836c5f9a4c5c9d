"""CloudFront signed URLs: download links through the CDN when one fronts the bucket.

CloudFront checks an RSA signature (PKCS#1 v1.5 over SHA-1, its only algorithm for signed URLs)
of a canned policy: one URL, one expiry. botocore's `CloudFrontSigner` builds the policy and the
query string (`Expires`, `Signature`, `Key-Pair-Id`); `cryptography` makes the signature. No
network call happens here: signing is pure computation, like S3 presigning.

Only downloads go through the CDN; upload URLs always name S3 itself.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["CloudFrontUrlSigner", "load_rsa_private_key"]


def load_rsa_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """An unencrypted RSA private key in PEM; `\\n` escapes count as newlines (one-line env files).

    Raises ValueError for anything else (CloudFront key groups take RSA keys only).
    """
    text = pem.decode("ascii") if isinstance(pem, bytes) else pem
    if "\n" not in text.strip() and "\\n" in text:
        text = text.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(text.strip().encode("ascii") + b"\n", None)
    except (TypeError, ValueError, UnicodeEncodeError) as error:
        raise ValueError(f"not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("CloudFront signed URLs need an RSA private key")
    return key


class CloudFrontUrlSigner:
    """Signs `{base_url}/{path}` for CloudFront with a canned policy.

    `key_pair_id` is the id of the CloudFront public key (in a trusted key group of the
    distribution) that matches `private_key_pem`.
    """

    def __init__(self, *, base_url: str, key_pair_id: str, private_key_pem: str | bytes) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"CDN base URL must be http(s): {base_url!r}")
        if not key_pair_id:
            raise ValueError("a CloudFront key pair id is required")
        self.base_url = base_url.rstrip("/")
        self.key_pair_id = key_pair_id
        self._key = load_rsa_private_key(private_key_pem)
        self._signer = CloudFrontSigner(key_pair_id, self._rsa_sha1)

    def _rsa_sha1(self, message: bytes) -> bytes:
        return self._key.sign(message, padding.PKCS1v15(), hashes.SHA1())

    def url_of(self, path: str) -> str:
        """The unsigned URL of an object key (keys are URL-safe; anything else is escaped)."""
        return f"{self.base_url}/{quote(path.lstrip('/'), safe='/~')}"

    def sign(self, path: str, expires_at: datetime) -> str:
        """A URL good until `expires_at` (a timezone-aware datetime; CloudFront uses seconds)."""
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        url = self._signer.generate_presigned_url(self.url_of(path), date_less_than=expires_at)
        return str(url)
