"""A local fleet on free ports: the emulator, its bootstrap and every service, as real processes.

`start_fleet` is how the integration tests (their session fleet, and the outage test's own),
and the bench start a fleet: a fresh resource prefix and secrets, the emulator on a free port
(or a given one), the bootstrap run from this process, each service on a free port with
`service_env`, all waited for until healthy; on exit the services stop in reverse start order,
before the emulator they depend on. `make run` (`devstack.run`) keeps its own loop: fixed contract
ports, children in their own sessions, log tailing and signal handling.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Literal

import httpx

from devstack.bootstrap import bootstrap
from devstack.localstack import LocalStack, localstack_endpoints
from devstack.ports import LOCALHOST, free_port
from devstack.processes import (
    KNOWN_SERVICES,
    STRIPPED_VARIABLES,
    Emulator,
    ServiceProcess,
    available_services,
    aws_env,
    service_env,
    stopped_cleanly,
)
from shared.auth import DEFAULT_DEVICE, issue_token
from shared.settings import CommonSettings

S3Lane = Literal["moto", "localstack"]

__all__ = [
    "LocalFleet",
    "S3Lane",
    "aws_environment",
    "distinct_free_ports",
    "instance_names",
    "start_fleet",
]


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it, parents before children (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def instance_names(services: Sequence[str], *, gateways: int = 1) -> list[tuple[str, str]]:
    """(instance name, package) of every process to start, in start order; the gateway's further
    instances are "gateway-2", "gateway-3", ..."""
    instances = []
    for package in services:
        instances.append((package, package))
        if package == "gateway":
            instances += [(f"gateway-{n}", package) for n in range(2, gateways + 1)]
    return instances


def distinct_free_ports(names: Sequence[str]) -> dict[str, int]:
    """A free port for each name, no two the same."""
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        port = free_port()
        if port not in ports.values():
            ports[names[len(ports)]] = port
    return ports


@contextmanager
def aws_environment(
    emulator_url: str, endpoints: Mapping[str, str] | None = None
) -> Iterator[None]:
    """This process's environment pointed at the emulator (botocore reads it), then put back;
    `endpoints` overrides some services' (`AWS_ENDPOINT_URL_S3`...)."""
    wanted = {**aws_env(emulator_url), **(endpoints or {})}
    saved = {name: os.environ.get(name) for name in (*STRIPPED_VARIABLES, *wanted)}
    for name in STRIPPED_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalFleet:
    """A running fleet (see `start_fleet`): where each process listens, its settings, its logs.

    `stop_emulator()` and `start_emulator()` take AWS away and bring a new emulator back on the
    same port, bootstrapped again, while the services keep running (an outage, as the services
    see one).
    """

    def __init__(
        self, *, log_dir: Path, prefix: str, emulator_port: int = 0, s3: S3Lane = "moto"
    ) -> None:
        self.log_dir = log_dir
        self.s3 = s3
        # With s3="localstack": AWS_ENDPOINT_URL_S3 / _SQS naming LocalStack, once it runs.
        self.endpoints: dict[str, str] = {}
        self._localstack: LocalStack | None = None
        self.secret = secrets.token_urlsafe(32)
        self.internal_token = secrets.token_urlsafe(32)
        # What the caller uses to reach the same resources as the services.
        self.settings = CommonSettings(
            environment="development",
            resource_prefix=prefix,
            aws_region="us-east-1",
            s3_addressing_style="path",
            auth_jwt_secret=self.secret,
            internal_token=self.internal_token,
        )
        self.ports: dict[str, int] = {}  # by instance name, running or not
        self.env: dict[str, str] = {}  # every service's (without BIND_HOST / BIND_PORT)
        self.processes: dict[str, ServiceProcess] = {}  # by instance name, in start order
        self.exit_codes: dict[str, int | None] = {}  # once stopped
        self.emulator_url = ""  # once started
        self._emulator_port = emulator_port
        self._emulators: list[Emulator] = []

    @property
    def prefix(self) -> str:
        return self.settings.resource_prefix

    @property
    def media_url(self) -> str:
        return self.url("media_service")

    def url(self, name: str) -> str:
        return f"http://{LOCALHOST}:{self.ports[name]}"

    def pid(self, name: str) -> int | None:
        process = self.processes.get(name)
        return process.pid if process else None

    def token(self, user: str, device: str = DEFAULT_DEVICE, *, roles: tuple[str, ...] = ()) -> str:
        return issue_token(user, self.secret, device_id=device, roles=roles)

    def auth(
        self, user: str, device: str = DEFAULT_DEVICE, *, roles: tuple[str, ...] = ()
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, device, roles=roles)}"}

    def exited(self) -> dict[str, int | None]:
        """The services that have exited so far, with their exit codes."""
        return {
            name: process.returncode
            for name, process in self.processes.items()
            if process.returncode is not None
        }

    @property
    def unclean_exits(self) -> dict[str, int | None]:
        """Once stopped: the services that crashed, hung or failed at shutdown (a bug)."""
        return {name: code for name, code in self.exit_codes.items() if not stopped_cleanly(code)}

    def describe_unclean_exits(self) -> str:
        bad = self.unclean_exits
        details = "\n".join(
            f"--- {name} (exit {code}):\n{self.processes[name].log_tail()}"
            for name, code in bad.items()
        )
        return f"services did not exit cleanly: {bad}\n{details}"

    def crash(self, name: str) -> list[int]:
        """kill -9 of a service and every process under it (pool workers, resource tracker),
        as a crash of its process group would; returns the pids killed (parent first)."""
        process = self.processes[name]
        if process.pid is None or process.returncode is not None:
            return []
        tree = process_tree(process.pid)
        for pid in tree:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.stop()  # reaps it: the exit code is -9
        return tree

    async def restart(self, name: str) -> ServiceProcess:
        """A crashed (or stopped) service started again on its port, its log in a new file
        (`{name}-{n}.log`); waits until healthy."""
        old = self.processes[name]
        if not isinstance(old, ServiceProcess):
            raise TypeError(f"{name} is not a service")

        def launch() -> ServiceProcess:
            old.stop()
            runs = sum(1 for _ in self.log_dir.glob(f"{name}-*.log")) + 2
            new = ServiceProcess(
                old.package,
                name=f"{name}-{runs}",
                port=old.port,
                env=self.env,
                log_dir=self.log_dir,
            )
            self.processes[name] = new
            new.launch()
            new.wait_healthy()
            return new

        # Off the event loop: stopping, listing logs and waiting all block.
        return await asyncio.to_thread(launch)

    async def start_emulator(self) -> str:
        """Start an emulator (after the first, on the first one's port) and bootstrap it."""
        number = len(self._emulators) + 1
        emulator = Emulator(
            log_path=self.log_dir / ("emulator.log" if number == 1 else f"emulator-{number}.log"),
            port=self._emulator_port,
        )
        self._emulators.append(emulator)
        self.emulator_url = await asyncio.to_thread(emulator.start)
        self._emulator_port = httpx.URL(self.emulator_url).port or self._emulator_port
        if self.s3 == "localstack" and self._localstack is None:
            # S3 and SQS from LocalStack (it checks presigned signatures); DynamoDB stays on moto.
            # Off the loop: it makes its data folder.
            self._localstack = await asyncio.to_thread(
                LocalStack, log_path=self.log_dir / "localstack.log"
            )
            self.endpoints = localstack_endpoints(await asyncio.to_thread(self._localstack.start))
        # Bootstrapped from this process, with botocore pointed at this emulator for the while.
        with aws_environment(self.emulator_url, self.endpoints):
            await bootstrap(self.settings)
        return self.emulator_url

    @property
    def emulator_pid(self) -> int | None:
        """The running emulator's process id (to freeze it with SIGSTOP, as a fault test does)."""
        return self._emulators[-1].pid if self._emulators else None

    async def stop_emulator(self) -> None:
        await asyncio.to_thread(self._emulators[-1].stop)

    async def start_services(
        self, services: Sequence[str], *, gateways: int, extra_env: Mapping[str, str]
    ) -> None:
        instances = instance_names(services, gateways=gateways)
        # The services others call need a port in `service_env` whether or not they run.
        self.ports = distinct_free_ports(
            [*KNOWN_SERVICES, *(name for name, _ in instances if name not in KNOWN_SERVICES)]
        )
        extra = {
            **self.endpoints,
            **extra_env,
            "AUTH_JWT_SECRET": self.secret,
            "INTERNAL_TOKEN": self.internal_token,
        }
        # Off the loop: finding the packages and starting processes (log files, fork and exec).
        self.env = await asyncio.to_thread(
            service_env,
            emulator_url=self.emulator_url,
            prefix=self.prefix,
            ports=self.ports,
            extra=extra,
        )
        for name, package in instances:
            self.processes[name] = ServiceProcess(
                package, name=name, port=self.ports[name], env=self.env, log_dir=self.log_dir
            )
        for process in self.processes.values():
            await asyncio.to_thread(process.launch)
        # They boot side by side; waiting for each in turn costs nothing extra.
        for process in self.processes.values():
            await asyncio.to_thread(process.wait_healthy)

    async def stop(self) -> None:
        """Stop the services in reverse start order, then every emulator; safe to call twice."""

        def stop_all() -> None:
            try:
                for name, process in reversed(self.processes.items()):
                    self.exit_codes[name] = process.stop()
            finally:
                for emulator in self._emulators:
                    emulator.stop()
                if self._localstack is not None:
                    self._localstack.stop()

        await asyncio.to_thread(stop_all)


@asynccontextmanager
async def start_fleet(
    *,
    log_dir: Path,
    prefix: str,
    extra_env: Mapping[str, str] | None = None,
    services: Sequence[str] | None = None,
    gateways: int = 1,
    emulator_port: int = 0,
    s3: S3Lane = "moto",
) -> AsyncIterator[LocalFleet]:
    """Start the emulator (on `emulator_port`, 0: a free one), bootstrap resources named with
    `prefix`, then `services` (default: every available one, with `gateways` gateway instances)
    on free ports, with `extra_env` on top of `service_env`; stop everything on exit.

    Exit codes are in `fleet.exit_codes` afterwards, those that are not clean in
    `fleet.unclean_exits`: the caller decides whether that fails it. `s3="localstack"` takes S3
    and SQS from LocalStack (`devstack.localstack`, signatures enforced), DynamoDB from moto.
    """
    # Off the loop: reading settings (.env) and finding the packages look at files.
    fleet = await asyncio.to_thread(
        LocalFleet, log_dir=log_dir, prefix=prefix, emulator_port=emulator_port, s3=s3
    )
    try:
        await fleet.start_emulator()
        await fleet.start_services(
            await asyncio.to_thread(available_services) if services is None else services,
            gateways=gateways,
            extra_env=extra_env or {},
        )
        yield fleet
    finally:
        await fleet.stop()
