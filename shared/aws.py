"""The one factory for AWS clients: long-lived aioboto3 clients opened in an `AsyncExitStack`.

S3 clients always sign with SigV4 (boto signs presigned URLs with SigV2 unless told), and
checksums are computed only when an operation requires them, so emulators and real S3 agree.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
from botocore.config import Config

from shared.settings import CommonSettings

# A long poll holds its response up to 20 s: its client must wait longer than that, so a quiet
# queue's poll never ends in a read timeout (and a retry that strands what it received).
LONG_POLL_MARGIN_SECONDS = 10


def client_config(settings: CommonSettings, *, read_timeout: float = 20) -> Config:
    return Config(
        region_name=settings.aws_region,
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
        retries={"mode": "standard", "max_attempts": settings.aws_max_attempts},
        connect_timeout=3,
        read_timeout=read_timeout,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=50,
    )


@dataclass(frozen=True)
class AwsClients:
    """The clients a service uses; an absent one is None (a service opens only what it needs)."""

    s3: Any = None
    sqs: Any = None
    dynamodb: Any = None


async def open_aws_clients(
    stack: AsyncExitStack,
    settings: CommonSettings,
    *services: str,
    sqs_long_poll_seconds: int | None = None,
) -> AwsClients:
    """Open one client per named service ("s3", "sqs", "dynamodb"), closed with `stack`.

    A consumer that long-polls SQS passes its wait, so the SQS client outwaits the poll.
    """
    session = aioboto3.Session()
    opened: dict[str, Any] = {}
    for name in services:
        if name not in ("s3", "sqs", "dynamodb"):
            raise ValueError(f"unknown AWS service: {name}")
        config = client_config(settings)
        if name == "sqs" and sqs_long_poll_seconds is not None:
            config = client_config(
                settings, read_timeout=sqs_long_poll_seconds + LONG_POLL_MARGIN_SECONDS
            )
        opened[name] = await stack.enter_async_context(session.client(name, config=config))
    return AwsClients(**opened)


def error_code(error: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
