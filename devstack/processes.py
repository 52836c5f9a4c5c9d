"""Start and stop the fleet's processes: the emulator and each service, as production runs them.

Used by `devstack.run` (behind `make run`) and by `devstack.fleet` (the integration tests' and
the bench's fleets), so both start services the same way: `python -m <package>` with settings
from the environment only, output to a log file, ready when `GET /healthz` answers 200.

Where a child runs decides who may stop it. The runner starts each in its own session
(`own_session=True`): Ctrl-C or a closed terminal reaches only the runner, which stops the
services in order, before the emulator they depend on. Tests keep children in pytest's process
group (the default), so whatever kills that group (Ctrl-C, `timeout`, a cancelled CI job) takes
the fleet with it even when no fixture teardown gets to run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from devstack.emulator import READY_PREFIX
from devstack.ports import LOCALHOST, free_port

__all__ = [
    "KNOWN_SERVICES",
    "REPO_ROOT",
    "Emulator",
    "ManagedProcess",
    "ProcessFailed",
    "ServiceProcess",
    "available_services",
    "aws_env",
    "free_port",
    "service_env",
    "stopped_cleanly",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
# In start order: the services others call come first.
KNOWN_SERVICES = ("media_service", "message_service", "gateway", "transcode_worker")
# A developer's own AWS identity must never leak into the local fleet; and a set
# AWS_IGNORE_CONFIGURED_ENDPOINT_URLS would send it to real AWS instead of the emulator.
STRIPPED_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)
# Generous: on a busy 2-core machine a service's imports and first AWS calls can take tens of
# seconds; a healthy start returns as soon as /healthz answers.
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.1
LOG_TAIL_LINES = 40


def stopped_cleanly(code: int | None) -> bool:
    """Whether an exit code from `stop()` means a clean exit (or the process never started).

    Uvicorn re-raises SIGTERM (or SIGINT, after Ctrl-C) once its graceful shutdown is done, so
    those count as clean; -SIGKILL (it ignored SIGTERM too long) or any other code does not.
    """
    return code in (None, 0, -signal.SIGTERM, -signal.SIGINT)


class ProcessFailed(RuntimeError):
    """A process did not come up (it exited, or never became ready); the message has its log."""


def available_services() -> list[str]:
    """The known service packages that can run (`python -m <package>`), in start order.

    A package without `__main__.py` is still being written: the fleet runs without it.
    """
    found = []
    for package in KNOWN_SERVICES:
        spec = importlib.util.find_spec(package)  # locates, does not import
        locations = spec.submodule_search_locations if spec else None
        if locations and any((Path(place) / "__main__.py").is_file() for place in locations):
            found.append(package)
    return found


def aws_env(emulator_url: str) -> dict[str, str]:
    """What points botocore at the emulator, with throwaway credentials (moto accepts any)."""
    return {
        "AWS_ENDPOINT_URL": emulator_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "S3_ADDRESSING_STYLE": "path",  # the emulator has no wildcard DNS for virtual hosts
    }


def service_env(
    *,
    emulator_url: str,
    prefix: str,
    ports: dict[str, int],
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment every service gets: this one, minus AWS identity, plus the fleet's wiring.

    `ports` maps service names to ports and must name `media_service` and `message_service`
    (the services others call), whether or not they run.
    """
    env = {key: value for key, value in os.environ.items() if key not in STRIPPED_VARIABLES}
    env.update(aws_env(emulator_url))
    env.update(
        {
            "RESOURCE_PREFIX": prefix,
            "ENVIRONMENT": "development",
            "MEDIA_SERVICE_URL": f"http://{LOCALHOST}:{ports['media_service']}",
        }
    )
    if "CORS_ALLOWED_ORIGINS" not in env:
        # The web client of every gateway of this fleet (ports vary) may call the services.
        env["CORS_ALLOWED_ORIGINS"] = ",".join(
            f"http://{host}:{port}"
            for name, port in sorted(ports.items())
            if name.startswith("gateway")
            for host in (LOCALHOST, "localhost")
        )
    if "message_service" in available_services():
        # Without it, media stay readable by their owners only (nobody to ask about members).
        env["MESSAGE_SERVICE_URL"] = f"http://{LOCALHOST}:{ports['message_service']}"
    env.update(extra or {})
    return env


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 16_384))
            text = log.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class ManagedProcess:
    """One child process with its output in a log file; `stop()` is safe to call twice."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        log_path: Path,
        own_session: bool = False,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = {**env, "PYTHONUNBUFFERED": "1"}  # logs reach the file as they happen
        self.log_path = log_path
        self.own_session = own_session
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); the exit code once it has exited."""
        return self._process.poll() if self._process else None

    def launch(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The child keeps its own copy of the descriptor; ours can close at once.
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def _failure(self, why: str) -> ProcessFailed:
        return ProcessFailed(
            f"{self.name} {why}; last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def _check_alive(self) -> None:
        code = self.returncode
        if code is not None:
            raise self._failure(f"exited with code {code} before it was ready")

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM, up to `timeout` seconds for a clean exit, then SIGKILL; the exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.own_session:
            # Whatever it left behind in its own group (pool workers, say) goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        return process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class ServiceProcess(ManagedProcess):
    """`python -m <package>` listening on `BIND_HOST:BIND_PORT`, ready once `/healthz` says 200."""

    def __init__(
        self,
        package: str,
        *,
        port: int,
        env: dict[str, str],
        log_dir: Path,
        name: str | None = None,
        own_session: bool = False,
    ) -> None:
        name = name or package
        super().__init__(
            name,
            [sys.executable, "-m", package],
            env={**env, "BIND_HOST": LOCALHOST, "BIND_PORT": str(port)},
            log_path=log_dir / f"{name}.log",
            own_session=own_session,
        )
        self.package = package
        self.port = port
        self.url = f"http://{LOCALHOST}:{port}"

    def wait_healthy(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                self._check_alive()
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise self._failure(f"did not answer {self.url}/healthz within {timeout:.0f}s")
                time.sleep(POLL_SECONDS)

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Launch and wait until healthy; on failure the process is stopped before raising."""
        self.launch()
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise


class Emulator(ManagedProcess):
    """`python -m devstack.emulator` on `port` (0: a free one); `url` is known once started."""

    def __init__(
        self, *, log_path: Path, port: int = 0, host: str = LOCALHOST, own_session: bool = False
    ) -> None:
        super().__init__(
            "emulator",
            [sys.executable, "-m", "devstack.emulator", "--host", host, "--port", str(port)],
            env=dict(os.environ),
            log_path=log_path,
            own_session=own_session,
        )
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the emulator has not been started")
        return self._url

    def _announced_url(self) -> str | None:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            if line.startswith(READY_PREFIX):
                return line[len(READY_PREFIX) :].strip()
        return None

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> str:
        """Wait for the emulator's announcement, then for its port to accept a connection."""
        deadline = time.monotonic() + timeout
        while (url := self._announced_url()) is None:
            self._check_alive()
            if time.monotonic() > deadline:
                raise self._failure(f"did not announce itself within {timeout:.0f}s")
            time.sleep(POLL_SECONDS)
        address = httpx.URL(url)
        with socket.create_connection((address.host, address.port or 80), timeout=timeout):
            pass
        self._url = url
        return url

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> str:
        """Launch and wait until it serves; returns its URL. On failure it is stopped first."""
        self.launch()
        try:
            return self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
