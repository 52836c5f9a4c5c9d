"""The clamd client against a real clamd (skipped, with one line, where clamd is not installed)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.clamd_server import (
    FILE_SIGNATURE,
    HASHED_FILE,
    MARKER_SIGNATURE,
    Clamd,
    clamd_binary,
    running_clamd,
)
from tests.media_factory.documents import infected_pdf, pdf
from tests.media_factory.safety import MALWARE_MARKER
from transcode_worker.safety.clamd import (
    ClamdAddress,
    ClamdClient,
    Outcome,
    ScanResult,
    decide,
    parse_reply,
)

BINARY = clamd_binary()
if BINARY is None:
    pytest.skip("clamd not installed (apt-get install clamav-daemon)", allow_module_level=True)


@pytest.fixture(scope="module")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clamd]:
    assert BINARY is not None
    with running_clamd(BINARY, tmp_path_factory.mktemp("clamd")) as server:
        yield server


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture(params=["unix", "tcp"])
def client(request: pytest.FixtureRequest, clamd: Clamd) -> ClamdClient:
    address = clamd.unix_address if request.param == "unix" else clamd.tcp_address
    return ClamdClient(ClamdAddress.parse(address), chunk_size=4096, timeout=30)


async def test_ping(client: ClamdClient) -> None:
    assert await client.ping()


async def test_a_clean_pdf_is_clean(client: ClamdClient) -> None:
    assert await client.scan(chunked(pdf(), 1000)) == ScanResult(outcome=Outcome.CLEAN)


async def test_the_marker_inside_a_pdf_is_found(client: ClamdClient) -> None:
    # Chunks that split the marker across INSTREAM chunks: clamd reassembles the stream.
    data = infected_pdf()
    split = data.index(MALWARE_MARKER) + len(MALWARE_MARKER) // 2
    result = await client.scan(chunked(data[:split], 7))
    assert result.outcome is Outcome.CLEAN  # half a marker is nothing
    result = await client.scan(chunked(data, 7))
    assert result.outcome is Outcome.INFECTED
    assert result.signature is not None
    assert result.signature.startswith(MARKER_SIGNATURE)


async def test_an_md5_listed_file_is_found(client: ClamdClient) -> None:
    result = await client.scan(chunked(HASHED_FILE, 10))
    assert result.signature is not None
    assert result.signature.startswith(FILE_SIGNATURE)


async def test_big_chunks_are_split_and_a_stream_over_the_limit_is_an_error(
    client: ClamdClient,
) -> None:
    """The fixture's clamd takes at most 1 MiB a stream: 2 MiB in one 2 MiB chunk is sent as
    4 KiB pieces until clamd refuses, and the refusal is an error, not a verdict."""
    result = await client.scan(chunked(b"\0" * (2 * 1024 * 1024), 2 * 1024 * 1024))
    assert result.outcome is Outcome.ERROR
    assert result.detail is not None
    assert decide(result, fail_open=True) == "pass_unscanned"
    assert decide(result, fail_open=False) == "fail"


async def test_a_clamd_that_is_down_is_retried_then_an_error(tmp_path: Path) -> None:
    client = ClamdClient(
        ClamdAddress.parse(f"unix://{tmp_path / 'nobody.sock'}"),
        connect_attempts=3,
        retry_delay=0.01,
    )
    assert not await client.ping()
    result = await client.scan(chunked(b"x", 1))
    assert result.outcome is Outcome.ERROR
    assert result.detail is not None
    assert "unavailable" in result.detail


@dataclass(frozen=True, kw_only=True)
class FlakyAddress(ClamdAddress):
    """The real clamd's address, whose first `failures` connections are refused (clamd
    restarting)."""

    failures: int = 0
    attempts: list[int] = field(default_factory=list)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.attempts.append(len(self.attempts))
        if len(self.attempts) <= self.failures:
            raise ConnectionRefusedError("clamd is restarting")
        return await super().connect()


async def test_connection_failures_are_retried(clamd: Clamd) -> None:
    address = FlakyAddress(path=str(clamd.socket_path), failures=2)
    client = ClamdClient(address, connect_attempts=3, retry_delay=0.01)
    result = await client.scan(chunked(infected_pdf(), 1000))
    assert result.outcome is Outcome.INFECTED
    assert address.attempts == [0, 1, 2]


async def test_a_refused_tcp_port_is_an_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on (bound, never listening)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        client = ClamdClient(
            ClamdAddress.parse(f"tcp://127.0.0.1:{port}"), connect_attempts=2, retry_delay=0.01
        )
        assert (await client.scan(chunked(b"x", 1))).outcome is Outcome.ERROR


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"stream: OK\0", ScanResult(outcome=Outcome.CLEAN)),
        (
            b"stream: Eicar-Test FOUND\0",
            ScanResult(outcome=Outcome.INFECTED, signature="Eicar-Test"),
        ),
        (
            b"INSTREAM size limit exceeded. ERROR\0",
            ScanResult(outcome=Outcome.ERROR, detail="INSTREAM size limit exceeded. ERROR"),
        ),
        (b"", ScanResult(outcome=Outcome.ERROR, detail="empty reply from clamd")),
    ],
)
def test_replies(reply: bytes, expected: ScanResult) -> None:
    assert parse_reply(reply) == expected


@pytest.mark.parametrize(
    "text", ["http://x:1", "tcp://host", "unix://", "tcp://h:1/path", "unix://host/p"]
)
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="CLAMD_ADDRESS"):
        ClamdAddress.parse(text)


def test_addresses_round_trip() -> None:
    for text in ("tcp://127.0.0.1:3310", "unix:///run/clamav/clamd.ctl"):
        assert str(ClamdAddress.parse(text)) == text
    assert decide(ScanResult(outcome=Outcome.CLEAN), fail_open=False) == "pass"
    assert decide(ScanResult(outcome=Outcome.INFECTED, signature="x"), fail_open=True) == "block"
