"""LocalStack's community S3 and SQS in host mode (no Docker): the signature-enforcing lane.

moto accepts any presigned URL; LocalStack checks a presigned query-string signature, its expiry,
the signed `Content-Length` and `x-amz-checksum-sha256` (403 / 400 as S3 does). `make localstack`
installs it into `.venv-localstack` (CPython 3.13, pins in `devstack/localstack-requirements.txt`);
`start_fleet(..., s3="localstack")` and `make run S3=localstack` point S3 and SQS here with
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL_SQS` while DynamoDB stays on moto (LocalStack's
DynamoDB downloads a JDK at first use).

Two things it does that real S3 would not, which no test may rely on: it answers anonymous
requests, and it does not check header-signed requests or POST policy signatures.

`python -m devstack.localstack [--port 4567]` runs one in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

from devstack.ports import LOCALHOST, free_port
from devstack.processes import REPO_ROOT, ManagedProcess

__all__ = [
    "LOCALSTACK_PYTHON",
    "LocalStack",
    "localstack_available",
    "localstack_endpoints",
    "missing_reason",
]

LOCALSTACK_PYTHON = REPO_ROOT / ".venv-localstack" / "bin" / "python"
# Services load eagerly, so the first request does not pay LocalStack's ~6 s plugin loading.
START_TIMEOUT_SECONDS = 90.0
POLL_SECONDS = 0.2
READY_STATES = ("available", "running")
SERVICES = ("s3", "sqs")
DEFAULT_PORT = 4567  # beside moto's 4566, so `make run S3=localstack` needs both


def localstack_available() -> bool:
    return LOCALSTACK_PYTHON.is_file()


def missing_reason() -> str:
    venv = LOCALSTACK_PYTHON.parent.parent.name
    return f"LocalStack is not installed ({venv} absent): make localstack"


def localstack_endpoints(url: str) -> dict[str, str]:
    """What sends botocore's S3 and SQS calls (only those) to LocalStack at `url`."""
    return {"AWS_ENDPOINT_URL_S3": url, "AWS_ENDPOINT_URL_SQS": url}


def _environment(port: int, volume: Path) -> dict[str, str]:
    # Only what LocalStack needs: the fleet's own variables (AWS_ENDPOINT_URL...) would confuse it.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        {
            "GATEWAY_LISTEN": f"{LOCALHOST}:{port}",
            "LOCALSTACK_HOST": f"{LOCALHOST}:{port}",
            # The ASGI server that works in host mode without LocalStack's Docker extras.
            "GATEWAY_SERVER": "hypercorn",
            "SERVICES": ",".join(SERVICES),
            "EAGER_SERVICE_LOADING": "1",
            "S3_SKIP_SIGNATURE_VALIDATION": "0",
            # Queue URLs as http://127.0.0.1:PORT/queue/...: the default names a host under
            # localhost.localstack.cloud, which needs public DNS this machine may not have.
            "SQS_ENDPOINT_STRATEGY": "path",
            "DNS_ADDRESS": "0",  # no DNS server of its own (port 53 is not ours to take)
            "DISABLE_EVENTS": "1",  # no analytics calls home
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "LOCALSTACK_VOLUME_DIR": str(volume),
            "FILESYSTEM_ROOT": str(volume / "root"),
            "TMPDIR": str(volume / "tmp"),
        }
    )
    return env


class LocalStack(ManagedProcess):
    """LocalStack in host mode on `port` (0: a free one), state under a fresh temporary directory;
    ready once `/_localstack/health` reports S3 and SQS available."""

    def __init__(self, *, log_path: Path, port: int = 0, own_session: bool = False) -> None:
        self.port = port or free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.volume = Path(tempfile.mkdtemp(prefix="ferry-localstack-"))
        (self.volume / "tmp").mkdir()
        super().__init__(
            "localstack",
            [str(LOCALSTACK_PYTHON), "-m", "localstack.runtime.main"],
            env=_environment(self.port, self.volume),
            log_path=log_path,
            own_session=own_session,
        )

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> str:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while True:
                self._check_alive()
                try:
                    health = client.get(f"{self.url}/_localstack/health").json()
                    states = health.get("services", {})
                    if all(states.get(name) in READY_STATES for name in SERVICES):
                        return self.url
                    last = str({name: states.get(name) for name in SERVICES})
                except (httpx.TransportError, ValueError) as error:
                    last = type(error).__name__
                if time.monotonic() > deadline:
                    raise self._failure(f"was not ready within {timeout:.0f}s ({last})")
                time.sleep(POLL_SECONDS)

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> str:
        """Launch and wait until S3 and SQS answer; returns the URL. Stopped first on failure."""
        if not localstack_available():
            raise RuntimeError(missing_reason())
        self.launch()
        try:
            return self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> int | None:
        # Its shutdown can hang on long polls cut off mid-wait; its state is thrown away anyway.
        code = super().stop(timeout)
        shutil.rmtree(self.volume, ignore_errors=True)
        return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.localstack", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument(
        "--log", type=Path, default=REPO_ROOT / ".devstack" / "logs" / "localstack.log"
    )
    args = parser.parse_args(argv)
    localstack = LocalStack(log_path=args.log, port=args.port)
    try:
        print(
            f"LocalStack (S3, SQS) listening on {localstack.start()}; log: {args.log}", flush=True
        )
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        localstack.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
