"""The fleet every integration test drives: the emulator and every service, as real processes.

One fleet per test session (starting processes is the slow part); tests stay independent by
using fresh user names (`user`) and their own media and conversations. The test process itself
talks to the same emulator (`aws`) to inspect storage and queues.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from PIL import Image

from devstack.bootstrap import bootstrap
from devstack.ports import LOCALHOST
from devstack.processes import (
    STRIPPED_VARIABLES,
    Emulator,
    ServiceProcess,
    available_services,
    aws_env,
    free_port,
    service_env,
    stopped_cleanly,
)
from shared.aws import AwsClients, open_aws_clients
from shared.settings import CommonSettings
from tests.integration.helpers import Fleet
from tests.media_factory import images
from transcode_worker.derive.moderation import phash_hex

__all__ = ["Fleet"]  # tests may import it from here or from helpers


# Short waits and small limits, so tests see retries, timeouts and refusals quickly.
def banned_photo() -> bytes:
    """A photo the test fleet's moderation blocklist names (by its perceptual hash)."""
    return images.jpeg(320, 240, seed=666)


def _phash_of(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return phash_hex(image.convert("RGB"))


TEST_SETTINGS = {
    "MODERATION_BLOCKLIST": json.dumps([_phash_of(banned_photo())]),
    "QUEUE_WAIT_SECONDS": "1",
    "RETRY_BASE_SECONDS": "0",
    "VISIBILITY_TIMEOUT_SECONDS": "5",
    "MAX_PENDING_UPLOADS": "5",
    "SLOT_RATE_PER_MINUTE": "12",
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


def _instances(services: list[str]) -> list[tuple[str, str]]:
    """(instance name, package) for every process to start."""
    instances = []
    for package in services:
        instances.append((package, package))
        if package == "gateway":
            instances += [(f"gateway-{n}", package) for n in range(2, TEST_GATEWAYS + 1)]
    return instances


def _distinct_free_ports(names: list[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        port = free_port()
        if port not in ports.values():
            ports[names[len(ports)]] = port
    return ports


def _wait_all_healthy(processes: list[ServiceProcess]) -> None:
    # They boot side by side; waiting for each in turn costs nothing extra.
    for process in processes:
        process.wait_healthy()


def _stop_all(processes: list[ServiceProcess]) -> None:
    codes = {process.name: process.stop() for process in reversed(processes)}
    # A service that crashed during the session, or hung or failed at shutdown, is a bug.
    bad = {name: code for name, code in codes.items() if not stopped_cleanly(code)}
    if bad:
        details = "\n".join(
            f"--- {process.name} (exit {bad[process.name]}):\n{process.log_tail()}"
            for process in processes
            if process.name in bad
        )
        raise AssertionError(f"services did not exit cleanly: {bad}\n{details}")


@pytest.fixture(scope="session")
async def fleet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fleet]:
    log_dir = tmp_path_factory.mktemp("fleet-logs")
    prefix = f"t{secrets.token_hex(4)}"
    secret = secrets.token_urlsafe(32)
    internal_token = secrets.token_urlsafe(32)
    async with AsyncExitStack() as stack:
        emulator = Emulator(log_path=log_dir / "emulator.log")
        stack.push_async_callback(asyncio.to_thread, emulator.stop)
        emulator_url = await asyncio.to_thread(emulator.start)

        # The test process reaches the emulator the way the services do: botocore's own env.
        environment = stack.enter_context(pytest.MonkeyPatch.context())
        for name in STRIPPED_VARIABLES:
            environment.delenv(name, raising=False)
        for name, value in aws_env(emulator_url).items():
            environment.setenv(name, value)
        settings = CommonSettings(
            environment="development",
            resource_prefix=prefix,
            aws_region="us-east-1",
            s3_addressing_style="path",
            auth_jwt_secret=secret,
            internal_token=internal_token,
        )
        await bootstrap(settings)

        instances = _instances(available_services())
        ports = _distinct_free_ports(
            ["media_service", "message_service", "gateway", "transcode_worker"]
            + [name for name, _ in instances if name.startswith("gateway-")]
        )
        extra = {**TEST_SETTINGS, "AUTH_JWT_SECRET": secret, "INTERNAL_TOKEN": internal_token}
        env = service_env(emulator_url=emulator_url, prefix=prefix, ports=ports, extra=extra)
        processes = [
            ServiceProcess(package, name=name, port=ports[name], env=env, log_dir=log_dir)
            for name, package in instances
        ]
        stack.push_async_callback(asyncio.to_thread, _stop_all, processes)
        for process in processes:
            process.launch()
        await asyncio.to_thread(_wait_all_healthy, processes)

        by_name = {process.name: process for process in processes}

        def url(name: str) -> str:
            return f"http://{LOCALHOST}:{ports[name]}"

        yield Fleet(
            emulator_url=emulator_url,
            prefix=prefix,
            resources=settings.resources,
            settings=settings,
            media_url=url("media_service"),
            worker_url=url("transcode_worker"),
            message_url=url("message_service") if "message_service" in by_name else None,
            gateway_urls=[p.url for p in processes if p.package == "gateway"],
            log_dir=log_dir,
            env=env,
            secret=secret,
            internal_token=internal_token,
            processes=by_name,
        )


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
