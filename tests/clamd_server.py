"""A real clamd for tests: temp DatabaseDirectory with signatures made here, unix socket and
loopback TCP, started and stopped by the test session.

The public signature database cannot be downloaded here (and is 200+ MB), so the database is
two files we write: `ferry.ndb`, a body signature matching `MALWARE_MARKER` anywhere in a file,
and `ferry.hdb`, the MD5 of one exact test file. With that tiny database clamd answers PING
about a second after it starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.media_factory.safety import MALWARE_MARKER

MARKER_SIGNATURE = "Ferry.Test.Marker"
FILE_SIGNATURE = "Ferry.Test.File"
HASHED_FILE = b"a file whose exact bytes are listed by MD5 in ferry.hdb\n"
START_DEADLINE = 60.0  # seconds; a loaded CI machine can be slow to start clamd


def clamd_binary() -> str | None:
    return shutil.which("clamd") or next(
        (path for path in ("/usr/sbin/clamd",) if Path(path).exists()), None
    )


@dataclass(frozen=True)
class Clamd:
    socket_path: Path
    port: int
    started_in: float  # seconds from exec to the first PONG

    @property
    def unix_address(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _pong(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(2)
            client.connect(str(path))
            client.sendall(b"zPING\0")
            return client.recv(16).startswith(b"PONG")
    except OSError:
        return False


def write_database(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ferry.ndb").write_text(f"{MARKER_SIGNATURE}:0:*:{MALWARE_MARKER.hex()}\n")
    md5 = hashlib.md5(HASHED_FILE).hexdigest()
    (directory / "ferry.hdb").write_text(f"{md5}:{len(HASHED_FILE)}:{FILE_SIGNATURE}\n")


@contextlib.contextmanager
def running_clamd(binary: str, workdir: Path, *, stream_max: str = "1M") -> Iterator[Clamd]:
    database = workdir / "db"
    write_database(database)
    socket_path = workdir / "clamd.sock"
    port = _free_port()
    config = workdir / "clamd.conf"
    config.write_text(
        "\n".join(
            [
                "Foreground yes",
                f"DatabaseDirectory {database}",
                f"LocalSocket {socket_path}",
                f"TCPSocket {port}",
                "TCPAddr 127.0.0.1",
                f"LogFile {workdir / 'clamd.log'}",
                f"StreamMaxLength {stream_max}",
                "SelfCheck 0",
                "",
            ]
        )
    )
    started = time.monotonic()
    log = (workdir / "clamd.out").open("wb")
    process = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = started + START_DEADLINE
        while not _pong(socket_path):  # poll with a deadline
            if process.poll() is not None:
                raise RuntimeError(
                    f"clamd exited with {process.returncode}: {(workdir / 'clamd.out').read_text()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError("clamd did not answer PING in time")
            time.sleep(0.05)
        yield Clamd(socket_path=socket_path, port=port, started_in=time.monotonic() - started)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
