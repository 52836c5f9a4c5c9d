"""The fleet every integration test drives: the emulator and every service, as real processes.

One fleet per test session (starting processes is the slow part); tests stay independent by
using fresh user names (`user`) and their own media and conversations. The test process itself
talks to the same emulator (`aws`) to inspect storage and queues.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from PIL import Image

from devstack.fleet import aws_environment, start_fleet
from shared.aws import AwsClients, open_aws_clients
from tests.clamd_server import clamd_binary, running_clamd
from tests.integration.helpers import Fleet
from tests.integration.localstack_lane import lane_aws, localstack_fleet
from tests.media_factory import safety
from transcode_worker.safety.pdq import pdq_hash

__all__ = ["Fleet", "lane_aws", "localstack_fleet"]  # tests may import it from here or from helpers


def banned_picture() -> Image.Image:
    """The picture the test fleet's PDQ hash list names (photos and video frames show it)."""
    return safety.textured_photo(320, 240, seed=666)


def banned_photo() -> bytes:
    """`banned_picture` as a JPEG."""
    buffer = io.BytesIO()
    banned_picture().save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_hash_list(directory: Path) -> Path:
    """The test fleet's MODERATION_PDQ_HASHLIST: the banned picture's PDQ hash."""
    path = directory / "pdq-hashes.txt"
    path.write_text(f"# test hash list\n{pdq_hash(banned_picture()).hex}\n")
    return path


# Short waits and small limits, so tests see retries, timeouts and refusals quickly.
TEST_SETTINGS = {
    "QUEUE_WAIT_SECONDS": "1",
    "PROGRESS_POLL_SECONDS": "0.2",
    "RETRY_BASE_SECONDS": "0",
    "VISIBILITY_TIMEOUT_SECONDS": "5",
    "MAX_PENDING_UPLOADS": "5",
    "SLOT_RATE_PER_MINUTE": "12",
    # Room for every test's uploads; test_governance declares slots past it.
    "QUOTA_BYTES_PER_USER": str(256 * 1024 * 1024),
    # Queue depths sampled every second, so the gauges move within a test.
    "QUEUE_SAMPLE_SECONDS": "1",
    "LOG_JSON": "true",
}
# Two gateways, so delivery across gateway instances is tested as it runs in production.
TEST_GATEWAYS = 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def clamd_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A real clamd with the test signatures (tests/clamd_server.py), or None when clamd is not
    installed (`.ci/run` installs clamav-daemon; the malware test then skips)."""
    binary = clamd_binary()
    if binary is None:
        yield None
        return
    with running_clamd(binary, tmp_path_factory.mktemp("clamd"), stream_max="64M") as clamd:
        yield clamd.unix_address


@pytest.fixture(scope="session")
async def fleet(
    tmp_path_factory: pytest.TempPathFactory, clamd_address: str | None
) -> AsyncIterator[Fleet]:
    env = {
        **TEST_SETTINGS,
        "MODERATION_PDQ_HASHLIST": str(write_hash_list(tmp_path_factory.mktemp("moderation"))),
    }
    if clamd_address is not None:
        env["CLAMD_ADDRESS"] = clamd_address
    async with start_fleet(
        log_dir=tmp_path_factory.mktemp("fleet-logs"),
        prefix=f"t{secrets.token_hex(4)}",
        extra_env=env,
        gateways=TEST_GATEWAYS,
    ) as local:
        # The test process reaches the emulator the way the services do: botocore's own env.
        with aws_environment(local.emulator_url):
            yield Fleet(
                emulator_url=local.emulator_url,
                prefix=local.prefix,
                resources=local.settings.resources,
                settings=local.settings,
                media_url=local.url("media_service"),
                worker_url=local.url("transcode_worker"),
                message_url=(
                    local.url("message_service") if "message_service" in local.processes else None
                ),
                gateway_urls=[p.url for p in local.processes.values() if p.package == "gateway"],
                log_dir=local.log_dir,
                env=local.env,
                secret=local.secret,
                internal_token=local.internal_token,
                processes=local.processes,
            )
    # A service that crashed during the session, or hung or failed at shutdown, is a bug.
    if local.unclean_exits:
        raise AssertionError(local.describe_unclean_exits())


@pytest.fixture(scope="session")
async def aws(fleet: Fleet) -> AsyncIterator[AwsClients]:
    """S3, SQS and DynamoDB clients on the fleet's emulator, for inspecting what services did."""
    async with AsyncExitStack() as stack:
        yield await open_aws_clients(stack, fleet.settings, "s3", "sqs", "dynamodb")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
def user() -> Callable[..., str]:
    """Makes fresh user names (`user()` → "alice-1f2e3d4c", `user("bob")` → "bob-..."),
    so tests sharing the session's fleet never see each other's data."""

    def make(base: str = "alice") -> str:
        return f"{base}-{secrets.token_hex(4)}"

    return make
