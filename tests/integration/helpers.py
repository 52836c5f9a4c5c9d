"""What integration tests share besides fixtures: the `Fleet` they drive.

How they wait (`eventually`, the timeout factor) is in `tests.waiting`, shared with unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from devstack.processes import ServiceProcess
from shared.auth import DEFAULT_DEVICE, INTERNAL_TOKEN_HEADER, issue_token
from shared.resources import ResourceNames
from shared.settings import CommonSettings


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
