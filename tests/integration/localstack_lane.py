"""The signature-enforcing lane: a second fleet whose S3 and SQS are LocalStack's (DynamoDB moto's).

Tests marked `localstack` use the `localstack_fleet` fixture; without `.venv-localstack`
(`make localstack`) they skip, in one summary line when the module calls `require_localstack()`
at its top. The lane's fleet leaves this process's environment alone for the session (the moto
fleet's tests build clients from it): `lane_aws` has S3/SQS/DynamoDB clients on the lane.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from devstack.fleet import aws_environment, start_fleet
from devstack.localstack import localstack_available, missing_reason
from shared.aws import AwsClients, open_aws_clients
from tests.integration.helpers import Fleet


def require_localstack() -> None:
    """At the top of a lane test module: skip the whole module, in one summary line, when
    LocalStack is not installed."""
    if not localstack_available():
        pytest.skip(missing_reason(), allow_module_level=True)


# No gateway: the lane is about storage; fewer processes on a shared 2-core machine.
LANE_SERVICES = ("media_service", "message_service", "transcode_worker")


@pytest.fixture(scope="session")
async def localstack_fleet(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Fleet]:
    if not await asyncio.to_thread(localstack_available):
        pytest.skip(missing_reason())
    # Imported here: the moto fleet's settings are defined there, and conftest imports this.
    from tests.integration.conftest import TEST_SETTINGS

    async with start_fleet(
        log_dir=tmp_path_factory.mktemp("localstack-fleet-logs"),
        prefix=f"l{secrets.token_hex(4)}",
        extra_env=TEST_SETTINGS,
        services=LANE_SERVICES,
        s3="localstack",
    ) as local:
        yield Fleet(
            emulator_url=local.emulator_url,
            prefix=local.prefix,
            resources=local.settings.resources,
            settings=local.settings,
            media_url=local.url("media_service"),
            worker_url=local.url("transcode_worker"),
            message_url=local.url("message_service"),
            gateway_urls=[],
            log_dir=local.log_dir,
            env=local.env,
            secret=local.secret,
            internal_token=local.internal_token,
            processes=local.processes,
        )
    if local.unclean_exits:
        raise AssertionError(local.describe_unclean_exits())


@pytest.fixture(scope="session")
async def lane_aws(localstack_fleet: Fleet) -> AsyncIterator[AwsClients]:
    """Clients on the lane: S3 and SQS at LocalStack, DynamoDB at moto (botocore reads the
    environment when a client is made, so it is set only while they are made)."""
    endpoints = {
        name: localstack_fleet.env[name] for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS")
    }
    async with AsyncExitStack() as stack:
        with aws_environment(localstack_fleet.emulator_url, endpoints):
            clients = await open_aws_clients(
                stack, localstack_fleet.settings, "s3", "sqs", "dynamodb"
            )
        yield clients
