"""An asyncio client for ClamAV's clamd: the INSTREAM command, over TCP or a unix socket.

INSTREAM sends the object as length-prefixed chunks (4-byte big-endian length, then the
bytes; a zero length ends the stream) and clamd answers one line: `stream: OK`,
`stream: <signature> FOUND` or `<message> ERROR`. We use the `z` (NUL-terminated) form of the
commands. The client holds at most one chunk of `chunk_size` bytes at a time, whatever the
object's size, and waits for the socket to drain before reading the next one, so memory stays
bounded. clamd refuses streams longer than its `StreamMaxLength` (25 MB by default): it answers
`INSTREAM size limit exceeded` and closes, which we report as an error, so set that limit
above the largest document Ferry accepts.

Connection failures (clamd restarting, not up yet) are retried with a growing delay before any
byte of the object is consumed. A failure after that (clamd died mid-stream, timeout) is an
`error` result: the caller's `fail_open` setting decides what an error means (`decide`).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "ClamdAddress",
    "ClamdClient",
    "Decision",
    "Outcome",
    "ScanResult",
    "decide",
]

_END = struct.pack(">I", 0)
_REPLY_LIMIT = 4096  # clamd's replies are one short line


@dataclass(frozen=True, kw_only=True)
class ClamdAddress:
    """Where clamd listens: `tcp://host:port` or `unix:///path/to/clamd.sock`."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> ClamdAddress:
        parts = urlsplit(text)
        if parts.scheme == "unix" and parts.path and not parts.netloc:
            return cls(path=parts.path)
        if parts.scheme == "tcp" and parts.hostname and parts.port and not parts.path:
            return cls(host=parts.hostname, port=parts.port)
        raise ValueError(f"CLAMD_ADDRESS must be tcp://host:port or unix:///path, got {text!r}")

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix://{self.path}"
        return f"tcp://{self.host}:{self.port}"

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.path is not None:
            return await asyncio.open_unix_connection(self.path)
        return await asyncio.open_connection(self.host, self.port)


class Outcome(StrEnum):
    CLEAN = "clean"
    INFECTED = "infected"
    ERROR = "error"


@dataclass(frozen=True, kw_only=True)
class ScanResult:
    outcome: Outcome
    signature: str | None = None  # the matched signature's name, when infected
    detail: str | None = None  # what went wrong, when error


Decision = Literal["pass", "block", "pass_unscanned", "fail"]


def decide(result: ScanResult, *, fail_open: bool) -> Decision:
    """What the pipeline does with a scan result.

    Infected blocks. An error passes the document marked "not scanned" when failing open
    (availability first: a clamd outage does not stop documents), and fails the job when
    failing closed (the job is retried, and ends failed if clamd stays down).
    """
    if result.outcome is Outcome.CLEAN:
        return "pass"
    if result.outcome is Outcome.INFECTED:
        return "block"
    return "pass_unscanned" if fail_open else "fail"


def parse_reply(reply: bytes) -> ScanResult:
    """clamd's answer to INSTREAM (NUL or newline terminated)."""
    text = reply.rstrip(b"\0\n").decode("utf-8", "replace").strip()
    if text.startswith("stream: "):
        text = text[len("stream: ") :]
    if text == "OK":
        return ScanResult(outcome=Outcome.CLEAN)
    if text.endswith(" FOUND"):
        return ScanResult(outcome=Outcome.INFECTED, signature=text[: -len(" FOUND")])
    return ScanResult(outcome=Outcome.ERROR, detail=text or "empty reply from clamd")


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """clamd's one reply: up to its NUL (or whatever came before it closed)."""
    try:
        return await reader.readuntil(b"\0")
    except asyncio.IncompleteReadError as error:
        return error.partial
    except asyncio.LimitOverrunError:
        return await reader.read(_REPLY_LIMIT)


class ClamdClient:
    """INSTREAM scans against one clamd. Holds no connection: each scan opens its own (clamd
    serves one command per connection unless IDSESSION is used, which buys nothing here)."""

    def __init__(
        self,
        address: ClamdAddress,
        *,
        chunk_size: int = 64 * 1024,
        timeout: float = 60.0,
        connect_attempts: int = 3,
        retry_delay: float = 0.5,
    ) -> None:
        if chunk_size <= 0 or connect_attempts <= 0:
            raise ValueError("chunk_size and connect_attempts must be positive")
        self.address = address
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.connect_attempts = connect_attempts
        self.retry_delay = retry_delay

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        delay = self.retry_delay
        for attempt in range(1, self.connect_attempts + 1):
            try:
                async with asyncio.timeout(self.timeout):
                    return await self.address.connect()
            except (OSError, TimeoutError):
                if attempt == self.connect_attempts:
                    raise
            await asyncio.sleep(delay)  # a back-off between attempts, not a wait for a state
            delay *= 2
        raise AssertionError("unreachable")

    async def ping(self) -> bool:
        """True when clamd answers PING (one attempt, no retries)."""
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await self.address.connect()
                try:
                    writer.write(b"zPING\0")
                    await writer.drain()
                    return (await _reply(reader)).rstrip(b"\0\n") == b"PONG"
                finally:
                    writer.close()
                    await writer.wait_closed()
        except (OSError, TimeoutError):
            return False

    async def scan(self, chunks: AsyncIterable[bytes]) -> ScanResult:
        """Stream `chunks` to clamd and return its verdict. Never raises for clamd's failures:
        an unreachable clamd (after the retries), a timeout or a broken connection is an
        `error` result."""
        try:
            reader, writer = await self._connect()
        except (OSError, TimeoutError) as error:
            return ScanResult(
                outcome=Outcome.ERROR, detail=f"clamd at {self.address} unavailable: {error!r}"
            )
        try:
            async with asyncio.timeout(self.timeout):
                # clamd closes early on a size limit; its reply says why.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    await self._send(writer, chunks)
                reply = await _reply(reader)
            return parse_reply(reply)
        except (OSError, TimeoutError) as error:
            return ScanResult(outcome=Outcome.ERROR, detail=f"clamd scan failed: {error!r}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):  # already reset by clamd
                await writer.wait_closed()

    async def _send(self, writer: asyncio.StreamWriter, chunks: AsyncIterable[bytes]) -> None:
        writer.write(b"zINSTREAM\0")
        async for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), self.chunk_size):
                piece = view[start : start + self.chunk_size]
                writer.write(struct.pack(">I", len(piece)))
                writer.write(piece)
                await writer.drain()  # back-pressure: never more than a chunk in flight
        writer.write(_END)
        await writer.drain()
