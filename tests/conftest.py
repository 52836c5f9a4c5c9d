"""Guards for the whole suite: no blocking call inside the event loop, no outbound network.

Both fail the test that did it, because both bugs otherwise hide: a blocking call only shows as
latency under load, and a test that quietly reaches the internet passes here and hangs or flakes
elsewhere. They watch this process: the code the unit tests drive in-process, the fleet starter
and the test clients. The services the integration tests start are other processes.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

# --- no blocking calls in the event loop ------------------------------------------------------
#
# BlockBuster wraps the blocking primitives (time.sleep, file and socket I/O on blocking handles,
# lock waits, os.stat, ...) and raises `BlockingError` when one runs on a thread whose event loop
# is running, with code of the packages below on the stack (a library call made on our behalf
# counts). It is on for the whole session: sync tests and fixtures never run inside a loop, so only
# async code is checked. The test harness itself (temporary directories, reading sample files)
# may block: it is not what ships. Allowed below are the calls that block by design and are not
# ours to move; a blocking call in Ferry's own code is fixed by moving it to a thread, never listed.
CHECKED_PACKAGES = [
    "shared",
    "gateway",
    "media_service",
    "message_service",
    "transcode_worker",
    "devstack",
    "scripts",
]


def _allow_what_blocks_by_design(buster: BlockBuster) -> None:
    for allowed in buster.functions.values():
        # A module's first import (a lazy import, or a library importing a submodule on first
        # use) reads files and runs the module's body, whatever that calls.
        allowed.can_block_in("<frozen importlib._bootstrap>", {"_find_and_load", "_find_spec"})
        # botocore reads its bundled data (service models, waiters, paginators) on first use and
        # caches it, and the AWS config files once per session: small, bounded, once a process.
        allowed.can_block_in("botocore/loaders.py", {"_wrapper"})
        allowed.can_block_in("botocore/configloader.py", {"raw_config_parse"})


@pytest.fixture(scope="session", autouse=True)
def _no_blocking_calls_in_the_event_loop() -> Iterator[None]:
    with blockbuster_ctx(CHECKED_PACKAGES) as buster:
        _allow_what_blocks_by_design(buster)
        yield


# --- no outbound network ------------------------------------------------------------------------
#
# Everything a test talks to runs on this machine: the fleet, the emulator, test servers. Any
# connection or name lookup for somewhere else is refused at once (an error the caller sees) and
# recorded, so the test fails even if the caller swallowed the error and retried.

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class OutboundNetworkRefused(RuntimeError):
    """A test tried to reach a host other than this machine."""


def _is_local(host: object) -> bool:
    if host is None:  # getaddrinfo(None, port): the local wildcard, for binding
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host in _LOCAL_NAMES or host == "":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a name other than localhost: resolving it is already outbound traffic
    return address.is_loopback or address.is_unspecified


class _NetworkGuard:
    def __init__(self) -> None:
        self.refused: list[str] = []

    def check(self, what: str, host: object) -> None:
        if not _is_local(host):
            attempt = f"{what} {host!r}"
            self.refused.append(attempt)
            raise OutboundNetworkRefused(f"tests make no outbound network calls: {attempt}")


@pytest.fixture(scope="session")
def network_guard() -> Iterator[_NetworkGuard]:
    """Refuses and records connections and look-ups off this machine (for the whole session)."""
    guard = _NetworkGuard()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard.check("connect to", address[0])
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            guard.check("connect to", address[0])
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        guard.check("look up", host)
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield guard


@pytest.fixture(autouse=True)
def _no_outbound_network(network_guard: _NetworkGuard) -> Iterator[None]:
    before = len(network_guard.refused)
    yield
    refused = network_guard.refused[before:]
    assert not refused, f"the test tried to reach the network: {refused}"
