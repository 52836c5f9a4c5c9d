"""The bench's own fleet: the emulator and every service as real processes, on free ports.

Started as the integration tests' `fleet` fixture starts theirs (same `devstack.processes`
parts, same bootstrap), with a fresh resource prefix and secrets, and settings of its own (the
per-user limits lifted, so the bench measures the service and not its rate limiter).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

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
from shared.auth import issue_token
from shared.settings import CommonSettings

# Two gateways, as the tests run them (once the gateway exists).
GATEWAYS = 2


@dataclass(frozen=True, kw_only=True)
class BenchFleet:
    emulator_url: str
    media_url: str
    prefix: str
    secret: str
    log_dir: Path
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def token(self, user: str) -> str:
        return issue_token(user, self.secret)

    def pid(self, name: str) -> int | None:
        process = self.processes.get(name)
        return process.pid if process else None


def _instances(services: list[str]) -> list[tuple[str, str]]:
    """(instance name, package) of every process to start, in start order."""
    instances = []
    for package in services:
        instances.append((package, package))
        if package == "gateway":
            instances += [(f"gateway-{n}", package) for n in range(2, GATEWAYS + 1)]
    return instances


def _distinct_free_ports(names: list[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        port = free_port()
        if port not in ports.values():
            ports[names[len(ports)]] = port
    return ports


@contextmanager
def _aws_environment(emulator_url: str) -> Iterator[None]:
    """This process's environment pointed at the emulator (botocore reads it), then restored."""
    saved = dict(os.environ)
    for name in STRIPPED_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(aws_env(emulator_url))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _stop(process: ServiceProcess) -> None:
    code = process.stop()
    if not stopped_cleanly(code):
        print(f"warning: {process.name} did not stop cleanly (exit {code}); see {process.log_path}")


@contextmanager
def running_fleet(log_dir: Path, settings: Mapping[str, str]) -> Iterator[BenchFleet]:
    """Start the emulator, bootstrap its resources, start every service; stop all on exit."""
    prefix = f"b{secrets.token_hex(4)}"
    secret = secrets.token_urlsafe(32)
    internal_token = secrets.token_urlsafe(32)
    with ExitStack() as stack:
        emulator = Emulator(log_path=log_dir / "emulator.log")
        stack.callback(emulator.stop)
        emulator_url = emulator.start()
        with _aws_environment(emulator_url):
            common = CommonSettings(
                _env_file=None,
                environment="development",
                resource_prefix=prefix,
                aws_region="us-east-1",
                s3_addressing_style="path",
                auth_jwt_secret=secret,
                internal_token=internal_token,
            )
            asyncio.run(bootstrap(common))

        instances = _instances(available_services())
        ports = _distinct_free_ports(
            ["media_service", "message_service", "gateway", "transcode_worker"]
            + [name for name, _ in instances if name.startswith("gateway-")]
        )
        extra = {**settings, "AUTH_JWT_SECRET": secret, "INTERNAL_TOKEN": internal_token}
        env = service_env(emulator_url=emulator_url, prefix=prefix, ports=ports, extra=extra)
        processes = [
            ServiceProcess(package, name=name, port=ports[name], env=env, log_dir=log_dir)
            for name, package in instances
        ]
        for process in processes:
            # Stopped in reverse start order, before the emulator they depend on.
            stack.callback(_stop, process)
            process.launch()
        for process in processes:
            process.wait_healthy()
        yield BenchFleet(
            emulator_url=emulator_url,
            media_url=f"http://{LOCALHOST}:{ports['media_service']}",
            prefix=prefix,
            secret=secret,
            log_dir=log_dir,
            processes={process.name: process for process in processes},
        )
