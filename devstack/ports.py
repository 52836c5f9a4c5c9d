"""Where things listen locally: the contract's ports (docs/api.md) and free-port helpers."""

from __future__ import annotations

import errno
import socket

LOCALHOST = "127.0.0.1"
EMULATOR_PORT = 4566  # LocalStack's port, so tools configured for it work unchanged
# Instance name → port. A second gateway (`GATEWAYS=2`) is the instance "gateway-2".
CONTRACT_PORTS: dict[str, int] = {
    "gateway": 8080,
    "media_service": 8081,
    "message_service": 8082,
    "transcode_worker": 8083,
    "gateway-2": 8084,
}


def free_port(host: str = LOCALHOST) -> int:
    """A port nobody listens on right now (the kernel's pick; another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind `host:port` now (with SO_REUSEADDR, as servers bind)."""
    if port == 0:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True
