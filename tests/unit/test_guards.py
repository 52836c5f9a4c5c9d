"""The suite's own guards (tests/conftest.py) catch what they promise to."""

from __future__ import annotations

import socket

import pytest
from blockbuster import BlockingError

from devstack.processes import available_services
from tests.conftest import OutboundNetworkRefused, _is_local, _NetworkGuard


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", True),
        (None, True),
        ("10.0.0.1", False),
        ("8.8.8.8", False),
        ("example.com", False),
        ("s3.amazonaws.com", False),
    ],
)
def test_only_this_machine_counts_as_local(host: str | None, local: bool) -> None:
    assert _is_local(host) is local


def test_a_connection_off_this_machine_is_refused_and_recorded(
    network_guard: _NetworkGuard,
) -> None:
    before = len(network_guard.refused)
    with socket.socket() as sock, pytest.raises(OutboundNetworkRefused):
        sock.connect(("192.0.2.1", 80))  # TEST-NET-1: would go out through the default route
    with pytest.raises(OutboundNetworkRefused):
        socket.getaddrinfo("example.com", 443)
    # Recorded, so a caller that swallowed the error still fails its test; cleared here.
    assert len(network_guard.refused) == before + 2
    del network_guard.refused[before:]


async def test_a_blocking_call_in_our_code_inside_the_loop_fails() -> None:
    # Finding the service packages looks at files: fine before the loop, a bug inside it.
    with pytest.raises(BlockingError):
        available_services()
