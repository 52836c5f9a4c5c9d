"""The one factory for AWS clients: long-lived aioboto3 clients opened in an `AsyncExitStack`.

S3 clients always sign with SigV4 (boto signs presigned URLs with SigV2 unless told), and
checksums are computed only when an operation requires them, so emulators and real S3 agree.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aioboto3
from botocore.config import Config

from shared.settings import CommonSettings

if TYPE_CHECKING:
    # Stubs from the dev extra (types-aiobotocore): the runtime images never import them.
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_sqs.client import SQSClient

ClientT = TypeVar("ClientT")

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
        # Every call is typed against the botocore stubs (mypy --strict); botocore's own check
        # of each call's parameters cost ~10% of a DynamoDB call's client CPU (issue 14). A
        # malformed call still fails, as AWS's ValidationException (a ClientError).
        parameter_validation=False,
    )


@dataclass(frozen=True)
class AwsClients:
    """The clients a service uses; a service opens only what it needs.

    Reading a client the service did not open is a programming error: it raises at once
    rather than handing None to a store that would fail later, far from the cause.
    """

    opened_s3: S3Client | None = None
    opened_sqs: SQSClient | None = None
    opened_dynamodb: DynamoDBClient | None = None

    @property
    def s3(self) -> S3Client:
        return _required(self.opened_s3, "s3")

    @property
    def sqs(self) -> SQSClient:
        return _required(self.opened_sqs, "sqs")

    @property
    def dynamodb(self) -> DynamoDBClient:
        return _required(self.opened_dynamodb, "dynamodb")


def _required(client: ClientT | None, name: str) -> ClientT:
    if client is None:
        raise RuntimeError(f"this service opened no {name} client (open_aws_clients)")
    return client


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
    # aioboto3 has no stubs: each opened client is Any until it lands in its typed field.
    return AwsClients(
        opened_s3=opened.get("s3"),
        opened_sqs=opened.get("sqs"),
        opened_dynamodb=opened.get("dynamodb"),
    )


def error_code(error: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
