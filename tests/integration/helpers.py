"""What integration tests share besides fixtures: the `Fleet` they drive, and `eventually`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from devstack.processes import ServiceProcess
from shared.auth import DEFAULT_DEVICE, INTERNAL_TOKEN_HEADER, issue_token
from shared.resources import ResourceNames
from shared.settings import CommonSettings

T = TypeVar("T")

# Every wait in the suite scales by this one factor (FERRY_TEST_TIMEOUT_FACTOR=3 on a slow box).
TIMEOUT_FACTOR = float(os.environ.get("FERRY_TEST_TIMEOUT_FACTOR", "1"))


@dataclass(frozen=True, kw_only=True)
class Fleet:
    """The running fleet of one test session: real processes on real sockets.

    `media_url` and `worker_url` are where those services listen; should a package not exist
    yet, nothing listens there (requests fail with "connection refused"). `message_url` is None
    and `gateway_urls` empty while their packages do not exist.
    """

    emulator_url: str
    prefix: str
    resources: ResourceNames
    settings: CommonSettings  # what the test process uses to reach the same resources
    media_url: str
    worker_url: str
    message_url: str | None
    gateway_urls: list[str]
    log_dir: Path
    env: dict[str, str]  # every service's environment (without BIND_HOST / BIND_PORT)
    secret: str
    internal_token: str
    processes: dict[str, ServiceProcess] = field(default_factory=dict)  # by instance name

    def token(self, user: str, device: str = DEFAULT_DEVICE) -> str:
        return issue_token(user, self.secret, device_id=device)

    def auth(self, user: str, device: str = DEFAULT_DEVICE) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, device)}"}

    def internal_headers(self) -> dict[str, str]:
        return {INTERNAL_TOKEN_HEADER: self.internal_token}

    def log(self, name: str) -> str:
        """Everything a process has logged so far (for assertions and failure messages)."""
        return (self.log_dir / f"{name}.log").read_text(encoding="utf-8", errors="replace")


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 20.0,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
    interval: float = 0.1,
) -> T:
    """Await `check()` until it returns something truthy, and return that.

    An `AssertionError` from `check` counts as "not yet" (so checks may use `assert`); any other
    exception ends the wait at once. On timeout, raises `AssertionError` with the last outcome.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout * TIMEOUT_FACTOR
    while True:
        last: object
        try:
            value = await check()
        except AssertionError as error:
            last = error
        else:
            if value:
                return value
            last = value
        if loop.time() >= deadline:
            raise AssertionError(f"still not true after {timeout * TIMEOUT_FACTOR:.1f}s: {last!r}")
        await asyncio.sleep(interval)
