"""CloudFront signed URLs and the S3 public-endpoint presigner: pure signing, no network."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aioboto3
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pydantic import ValidationError

from media_service.app import create_app
from media_service.cdn import CloudFrontUrlSigner, load_rsa_private_key
from media_service.settings import Settings
from media_service.storage import MediaBucket
from shared.aws import client_config

CDN = "https://d111111abcdef8.cloudfront.net"
KEY_PAIR_ID = "K2JCJMDEHXQW5F"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def private_pem(private_key: rsa.RSAPrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _cloudfront_b64decode(text: str) -> bytes:
    """CloudFront's URL-safe base64: '-' for '+', '_' for '=', '~' for '/'."""
    return base64.b64decode(text.replace("-", "+").replace("_", "=").replace("~", "/"))


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def test_signed_url_verifies_with_the_public_key_and_carries_expiry_and_key_pair_id(
    private_key: rsa.RSAPrivateKey, private_pem: str
) -> None:
    signer = CloudFrontUrlSigner(
        base_url=CDN + "/", key_pair_id=KEY_PAIR_ID, private_key_pem=private_pem
    )
    expires_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    url = signer.sign("d/abc123/thumb_320.webp", expires_at)

    resource = f"{CDN}/d/abc123/thumb_320.webp"
    assert url.startswith(resource + "?")
    query = _query(url)
    assert set(query) == {"Expires", "Signature", "Key-Pair-Id"}
    assert query["Key-Pair-Id"] == KEY_PAIR_ID
    assert int(query["Expires"]) == int(expires_at.timestamp())
    # The canned policy CloudFront rebuilds from the request, signed with RSA-SHA1.
    policy = json.dumps(
        {
            "Statement": [
                {
                    "Resource": resource,
                    "Condition": {"DateLessThan": {"AWS:EpochTime": int(expires_at.timestamp())}},
                }
            ]
        },
        separators=(",", ":"),
    ).encode()
    signature = _cloudfront_b64decode(query["Signature"])
    private_key.public_key().verify(signature, policy, padding.PKCS1v15(), hashes.SHA1())
    tampered = policy.replace(query["Expires"].encode(), b"1999999999")
    with pytest.raises(InvalidSignature):  # a different expiry is a different policy
        private_key.public_key().verify(signature, tampered, padding.PKCS1v15(), hashes.SHA1())


def test_paths_are_escaped_and_naive_datetimes_refused(private_pem: str) -> None:
    signer = CloudFrontUrlSigner(base_url=CDN, key_pair_id=KEY_PAIR_ID, private_key_pem=private_pem)
    assert signer.url_of("/o/a b") == f"{CDN}/o/a%20b"
    with pytest.raises(ValueError, match="timezone-aware"):
        signer.sign("o/m_x", datetime(2030, 1, 1))


def test_keys_load_from_escaped_pem_and_anything_but_rsa_is_refused(private_pem: str) -> None:
    one_line = private_pem.strip().replace("\n", "\\n")
    assert isinstance(load_rsa_private_key(one_line), rsa.RSAPrivateKey)
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ValueError, match="RSA"):
        load_rsa_private_key(ec_pem)
    with pytest.raises(ValueError, match="PEM"):
        load_rsa_private_key("not a key")
    with pytest.raises(ValueError, match="http"):
        CloudFrontUrlSigner(base_url="cdn.example", key_pair_id="K", private_key_pem=private_pem)


def test_cdn_settings_go_together_and_the_key_is_checked_at_start(private_pem: str) -> None:
    assert not Settings().cdn_enabled
    with pytest.raises(ValidationError, match="go together"):
        Settings(cdn_base_url=CDN)
    with pytest.raises(ValidationError, match="PEM"):
        Settings(cdn_base_url=CDN, cdn_key_pair_id=KEY_PAIR_ID, cdn_private_key="nope")
    settings = Settings(cdn_base_url=CDN, cdn_key_pair_id=KEY_PAIR_ID, cdn_private_key=private_pem)
    assert settings.cdn_enabled
    assert private_pem not in repr(settings)  # a secret never lands in a log line


# --- storage: which URLs go where ------------------------------------------------------------


@pytest.fixture
async def s3_clients(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Any, Any]]:
    """An S3 client as the service calls it, and a signing-only one on the host's address."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL": "http://localstack:4566",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(s3_addressing_style="path")
    session = aioboto3.Session()
    async with AsyncExitStack() as stack:
        inside = await stack.enter_async_context(
            session.client("s3", config=client_config(settings))
        )
        public = await stack.enter_async_context(
            session.client(
                "s3", endpoint_url="http://localhost:4566", config=client_config(settings)
            )
        )
        yield inside, public


async def test_uploads_go_to_s3_and_downloads_through_the_cdn(
    s3_clients: tuple[Any, Any], private_pem: str
) -> None:
    inside, public = s3_clients
    cdn = CloudFrontUrlSigner(base_url=CDN, key_pair_id=KEY_PAIR_ID, private_key_pem=private_pem)
    storage = MediaBucket(inside, "ferry-media", presigner=public, cdn=cdn)
    put = await storage.sign_put(
        "o/m_1", content_type="image/jpeg", size=10, sha256_hex="00" * 32, ttl_seconds=60
    )
    part = await storage.sign_part("o/m_2", upload_id="u", part_number=1, length=5, ttl_seconds=60)
    for url in (put.url, part.url):
        assert url.startswith("http://localhost:4566/ferry-media/o/m_")
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url

    before = datetime.now(UTC)
    variant = await storage.sign_get("d/abc/thumb_320.webp", version_id=None, ttl_seconds=300)
    original = await storage.sign_get("o/m_1", version_id="v1", ttl_seconds=300)
    for url in (variant, original):
        assert url.startswith(CDN + "/")
        expires = int(_query(url)["Expires"])
        assert before + timedelta(seconds=299) <= datetime.fromtimestamp(expires, UTC)
        assert datetime.fromtimestamp(expires, UTC) <= datetime.now(UTC) + timedelta(seconds=300)

    # A named download (a document) keeps S3: its attachment disposition and version pin.
    document = await storage.sign_get(
        "o/m_3", version_id="v3", ttl_seconds=300, download_name="report.pdf"
    )
    assert document.startswith("http://localhost:4566/ferry-media/o/m_3?")
    assert _query(document)["versionId"] == "v3"
    assert "attachment" in _query(document)["response-content-disposition"]


async def test_without_a_public_endpoint_or_cdn_urls_name_the_service_endpoint(
    s3_clients: tuple[Any, Any],
) -> None:
    inside, _ = s3_clients
    storage = MediaBucket(inside, "ferry-media")
    url = await storage.sign_get("o/m_1", version_id="v1", ttl_seconds=60)
    assert url.startswith("http://localstack:4566/ferry-media/o/m_1?")
    assert _query(url)["versionId"] == "v1"


async def test_the_app_signs_with_the_public_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL": "http://localstack:4566",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(s3_addressing_style="path", s3_public_endpoint_url="http://localhost:4566")
    app = create_app(settings)
    async with app.router.lifespan_context(app):  # opens clients; nothing connects
        storage: MediaBucket = app.state.serving.bucket
        signed = await storage.sign_put(
            "o/m_1", content_type="image/png", size=1, sha256_hex="ab" * 32, ttl_seconds=60
        )
        assert signed.url.startswith("http://localhost:4566/ferry-media/o/m_1?")
