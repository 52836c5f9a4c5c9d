"""The slot's PUT URL signer (`media_service.presign`) makes byte-identical URLs to botocore's
`generate_presigned_url("put_object")` for the same inputs and instant, for each way Ferry
addresses S3 (path style on an emulator, virtual hosts, AWS itself, temporary credentials)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aioboto3
import botocore.auth
import pytest
from botocore.config import Config
from botocore.exceptions import NoCredentialsError

from media_service.presign import PutUrlSigner

INSTANT = datetime(2026, 11, 30, 7, 25, 31, tzinfo=UTC)
CHECKSUM = base64.b64encode(hashlib.sha256(b"photo").digest()).decode()

SETUPS: dict[str, dict[str, Any]] = {
    "emulator-path": {"endpoint_url": "http://127.0.0.1:4566", "style": "path"},
    "public-endpoint-path": {"endpoint_url": "https://media.example.com:8443", "style": "path"},
    "emulator-virtual": {
        "endpoint_url": "http://localhost.localstack.cloud:4566",
        "style": "virtual",
    },
    "aws-virtual": {"endpoint_url": None, "style": "virtual", "region": "eu-west-1"},
    "aws-path-session-token": {
        "endpoint_url": None,
        "style": "path",
        "region": "us-west-2",
        "token": "FwoGZXIvYXdzEJr//////////wEaDH+tmp/token=",
    },
}


@pytest.fixture(params=sorted(SETUPS))
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    setup = SETUPS[request.param]
    config = Config(
        region_name=setup.get("region", "us-east-1"),
        signature_version="s3v4",
        s3={"addressing_style": setup["style"]},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        parameter_validation=False,
    )
    session = aioboto3.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=setup.get("token"),
    )
    async with session.client("s3", endpoint_url=setup["endpoint_url"], config=config) as s3:
        yield s3


async def _botocore_url(client: Any, monkeypatch: pytest.MonkeyPatch, **params: Any) -> str:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: INSTANT.replace(tzinfo=None))
    url = await client.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": "ferry-media",
            "Key": params["key"],
            "ContentType": params["content_type"],
            "ContentLength": params["size"],
            "ChecksumSHA256": CHECKSUM,
        },
        ExpiresIn=params["ttl"],
    )
    monkeypatch.undo()
    return str(url)


@pytest.mark.parametrize(
    ("key", "content_type", "size", "ttl"),
    [
        ("o/m_01JDX7Q4B5N8ZK2R3T6V9W0YAC", "image/jpeg", 2_811_904, 300),
        ("o/m_short", "video/mp4", 1, 60),
        ("o/m_odd key+é~!'()*", "application/pdf; charset=binary", 104_857_600, 604_800),
    ],
)
async def test_the_fast_path_signs_exactly_as_botocore(
    client: Any, monkeypatch: pytest.MonkeyPatch, key: str, content_type: str, size: int, ttl: int
) -> None:
    signer = PutUrlSigner(client, "ferry-media")
    # The first URL decides the path (its probe compares both ways at one instant).
    await signer.sign(
        "o/m_first", content_type="image/jpeg", size=1, checksum=CHECKSUM, ttl_seconds=1
    )
    assert signer.fast

    mine = await signer.sign(
        key, content_type=content_type, size=size, checksum=CHECKSUM, ttl_seconds=ttl, now=INSTANT
    )
    theirs = await _botocore_url(
        client, monkeypatch, key=key, content_type=content_type, size=size, ttl=ttl
    )
    assert mine == theirs


async def test_without_credentials_it_fails_as_botocore_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = Config(
        region_name="us-east-1", signature_version="s3v4", s3={"addressing_style": "path"}
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    async with aioboto3.Session().client(
        "s3", endpoint_url="http://127.0.0.1:4566", config=config
    ) as s3:
        signer = PutUrlSigner(s3, "ferry-media")
        with pytest.raises(NoCredentialsError):
            await signer.sign(
                "o/m_anon", content_type="image/jpeg", size=1, checksum=CHECKSUM, ttl_seconds=60
            )
