"""`make run`: the embedded AWS emulator, the bootstrap, then every service; Ctrl-C stops all.

`python -m devstack.run [--emulator-port 4566] [--port-offset 0] [--gateways 1] [--s3 moto]`.
`--s3 localstack` (`make run S3=localstack`) takes S3 and SQS from LocalStack on :4567 (presigned
signatures enforced; `make localstack` installs it), DynamoDB still from the embedded emulator.
Services listen on the contract's ports (docs/api.md) plus the offset, so a test can run a
second stack beside a developer's. Each process logs to `.devstack/logs/<name>.log`; the runner
echoes every log here, prefixed with its name. Services that do not exist yet are skipped.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from devstack.fleet import instance_names
from devstack.localstack import DEFAULT_PORT as LOCALSTACK_PORT
from devstack.localstack import LocalStack, localstack_endpoints
from devstack.ports import CONTRACT_PORTS, EMULATOR_PORT, LOCALHOST, port_is_free
from devstack.processes import (
    REPO_ROOT,
    Emulator,
    ManagedProcess,
    ProcessFailed,
    ServiceProcess,
    available_services,
    service_env,
    stopped_cleanly,
)
from devstack.tail import LogTailer
from devstack.token import dev_token
from shared.settings import CommonSettings

DEFAULT_LOG_DIR = REPO_ROOT / ".devstack" / "logs"
DISPLAY_NAMES = {
    "gateway": "Edge Gateway",
    "media_service": "Media Service",
    "message_service": "Message Service",
    "transcode_worker": "Transcode Worker",
}
BANNER_ORDER = ("gateway", "media_service", "message_service", "transcode_worker")
MONITOR_SECONDS = 1.0
EXIT_STARTUP_FAILED = 1


class StartupError(Exception):
    """The stack could not start; the message says why in a sentence."""


class _Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived (raised from the signal handler, in the main thread)."""


# Ctrl-C, `kill`, a closed terminal: each stops the fleet in order (children are in their own
# sessions, so nothing else would stop them).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True, kw_only=True)
class Instance:
    name: str  # "gateway-2" for a second gateway
    package: str
    port: int

    @property
    def title(self) -> str:
        title = DISPLAY_NAMES.get(self.package, self.package)
        return f"{title} 2" if self.name != self.package else title


def plan_instances(services: list[str], *, port_offset: int, gateways: int) -> list[Instance]:
    """The processes to start, in start order, each on its contract port plus `port_offset`."""
    return [
        Instance(name=name, package=package, port=CONTRACT_PORTS[name] + port_offset)
        for name, package in instance_names(services, gateways=gateways)
    ]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.run", description=__doc__)
    parser.add_argument("--emulator-port", type=int, default=EMULATOR_PORT)
    parser.add_argument(
        "--port-offset", type=int, default=0, help="added to every service's contract port"
    )
    parser.add_argument(
        "--gateways",
        type=int,
        choices=(1, 2),
        default=int(os.environ.get("GATEWAYS", "1")),
        help="Edge Gateway instances (default: $GATEWAYS or 1)",
    )
    parser.add_argument("--log-dir", type=Path, default=DEFAULT_LOG_DIR)
    parser.add_argument(
        "--s3",
        choices=("moto", "localstack"),
        default=os.environ.get("S3") or "moto",
        help="where S3 and SQS come from (default: $S3 or moto, the embedded emulator)",
    )
    return parser.parse_args(argv)


def _check_ports(emulator_port: int, instances: list[Instance]) -> None:
    wanted = [("AWS emulator", emulator_port)] + [(i.title, i.port) for i in instances]
    taken = [f"{port} ({what})" for what, port in wanted if not port_is_free(LOCALHOST, port)]
    if taken:
        raise StartupError(
            f"port {', '.join(taken)} already in use on {LOCALHOST}: is another `make run` "
            "(or LocalStack) still running? Stop it, or pass --port-offset / --emulator-port."
        )


def _bootstrap(env: dict[str, str], log_path: Path, tailer: LogTailer) -> None:
    """The same bootstrap the services' deployment runs, with exactly the services' environment."""
    with log_path.open("wb") as log:
        tailer.follow("bootstrap", log_path)
        result = subprocess.run(
            [sys.executable, "-m", "devstack.bootstrap"],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise StartupError(f"the bootstrap failed (exit {result.returncode}); see {log_path}")


def _stop(process: ManagedProcess, tailer: LogTailer) -> None:
    code = process.stop()
    if not stopped_cleanly(code):
        tailer.print(f"{process.name} did not stop cleanly (exit {code}); see {process.log_path}")


def _banner(
    instances: list[Instance], emulator_url: str, secret: str, extra: dict[str, str]
) -> str:
    rows = sorted(instances, key=lambda i: (BANNER_ORDER.index(i.package), i.name))
    localstack_url = extra.get("AWS_ENDPOINT_URL_S3")
    where = "S3 and SQS on LocalStack" if localstack_url else "embedded AWS emulator"
    lines = ["", f"Ferry is running ({where})"]
    lines += [f"  {i.title:<18}http://{LOCALHOST}:{i.port}" for i in rows]
    if localstack_url:
        lines.append(f"  {'LocalStack':<18}{localstack_url}")
    lines += [
        f"  {'AWS emulator':<18}{emulator_url}",
        f"  dev token (alice): {dev_token('alice', secret)}",
        "  make token USER=bob   prints another",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _serve(args: argparse.Namespace, tailer: LogTailer, stack: ExitStack) -> None:
    """Start everything (registering each stop on `stack`), then watch until interrupted."""
    log_dir: Path = args.log_dir
    # The developer's prefix and secret (environment or `.env`), read as the services read them.
    settings = CommonSettings(environment="development")
    instances = plan_instances(
        available_services(), port_offset=args.port_offset, gateways=args.gateways
    )
    _check_ports(args.emulator_port, instances)
    if not instances:
        tailer.print("no service package has a __main__.py yet: running the emulator only")

    emulator = Emulator(
        port=args.emulator_port, log_path=log_dir / "emulator.log", own_session=True
    )
    stack.callback(_stop, emulator, tailer)
    emulator.launch()  # (re)creates its log first, so the tail starts at its first line
    tailer.follow("emulator", emulator.log_path)
    emulator_url = emulator.wait_ready()

    ports = {name: port + args.port_offset for name, port in CONTRACT_PORTS.items()}
    # Human-readable logs by default here; the services' own default (JSON) is for machines.
    extra = {"LOG_JSON": os.environ.get("LOG_JSON", "false")}
    if args.s3 == "localstack":
        localstack = LocalStack(
            port=LOCALSTACK_PORT + args.port_offset,
            log_path=log_dir / "localstack.log",
            own_session=True,
        )
        stack.callback(_stop, localstack, tailer)
        tailer.print(f"starting LocalStack (S3, SQS) on {localstack.url}...")
        extra.update(localstack_endpoints(localstack.start()))
    env = service_env(
        emulator_url=emulator_url, prefix=settings.resource_prefix, ports=ports, extra=extra
    )
    _bootstrap(env, log_dir / "bootstrap.log", tailer)

    processes = []
    for instance in instances:
        process = ServiceProcess(
            instance.package,
            name=instance.name,
            port=instance.port,
            env=env,
            log_dir=log_dir,
            own_session=True,
        )
        stack.callback(_stop, process, tailer)
        process.launch()
        tailer.follow(instance.name, process.log_path)
        processes.append(process)
    for process in processes:  # they boot side by side; wait for each in turn
        process.wait_healthy()
    watched: list[ManagedProcess] = [*processes]
    if "media_service" in available_services():
        # Media lifetime: a sweeper pass every SWEEP_INTERVAL_SECONDS (docs/lifecycle.md).
        sweeper = ManagedProcess(
            "sweeper",
            [sys.executable, "-m", "media_service.sweeper", "--loop"],
            env=env,
            log_path=log_dir / "sweeper.log",
            own_session=True,
        )
        stack.callback(_stop, sweeper, tailer)
        sweeper.launch()
        tailer.follow("sweeper", sweeper.log_path)
        watched.append(sweeper)

    tailer.print(_banner(instances, emulator_url, settings.auth_jwt_secret, extra))

    reported: set[str] = set()
    while True:  # until a signal raises _Interrupted
        for child in [emulator, *watched]:
            code = child.returncode
            if code is not None and child.name not in reported:
                reported.add(child.name)
                tailer.print(f"{child.name} exited with code {code}; see {child.log_path}")
        time.sleep(MONITOR_SECONDS)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        # Ignored from here on, before anything else runs: a second SIGTERM to the group (or a
        # second Ctrl-C) arriving while the first is still being handled must not raise again
        # out of the `except` below and print a traceback instead of stopping the fleet.
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_IGN)
        raise _Interrupted(signum)

    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, interrupt)
    tailer = LogTailer(sys.stdout)
    code = 0
    try:
        with ExitStack() as stack:
            stack.callback(tailer.close)  # registered first: it runs last, after every stop
            try:
                _serve(args, tailer, stack)
            except _Interrupted:
                tailer.print("stopping...")
            except (StartupError, ProcessFailed) as error:
                tailer.print(f"Ferry could not start: {error}")
                code = EXIT_STARTUP_FAILED
            finally:
                # Stopping runs once and to the end: a second Ctrl-C must not cut it short.
                for stop_signal in STOP_SIGNALS:
                    signal.signal(stop_signal, signal.SIG_IGN)
    finally:
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, signal.SIG_DFL)
    if code == 0:
        print("stopped.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
