"""Run a command with ADVERTISED_URL set to this ECS task's own address.

    python ecs_advertise.py COMMAND [ARG...]

The Message Service pushes to the gateway instance holding a device, at the URL that instance
wrote into the connection registry (ADVERTISED_URL). On ECS with awsvpc networking every task has
its own private IP, known only at run time, from the task metadata endpoint
(ECS_CONTAINER_METADATA_URI_V4). This reads it and `exec`s the command (same PID, so signals
still reach the service). Elsewhere (compose, `make run`), or when ADVERTISED_URL is already set,
the command runs unchanged. Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable, MutableMapping
from typing import Any

METADATA_VARIABLE = "ECS_CONTAINER_METADATA_URI_V4"
FETCH_ATTEMPTS = 5
FETCH_TIMEOUT_SECONDS = 2.0


def task_ipv4(container_metadata: dict[str, Any]) -> str:
    """The container's first IPv4 address (awsvpc: the task's elastic network interface)."""
    for network in container_metadata.get("Networks", []):
        for address in network.get("IPv4Addresses", []):
            if address:
                return str(address)
    raise ValueError("the task metadata names no IPv4 address (is the task on awsvpc?)")


def fetch_metadata(url: str) -> dict[str, Any]:
    """GET the container metadata, retrying briefly (the agent may not answer at once)."""
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:
                document = json.load(response)
            if not isinstance(document, dict):
                raise ValueError("the task metadata is not a JSON object")
            return document
        except OSError:
            if attempt == FETCH_ATTEMPTS:
                raise
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def advertise(
    env: MutableMapping[str, str],
    fetch: Callable[[str], dict[str, Any]] = fetch_metadata,
) -> str | None:
    """Set env["ADVERTISED_URL"] from the ECS metadata when it is unset; the URL set, or None."""
    if env.get("ADVERTISED_URL") or not env.get(METADATA_VARIABLE):
        return None
    port = env.get("BIND_PORT", "8080")
    url = f"http://{task_ipv4(fetch(env[METADATA_VARIABLE]))}:{port}"
    env["ADVERTISED_URL"] = url
    return url


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        advertise(os.environ)
    except (OSError, ValueError) as error:
        print(f"ecs_advertise: cannot learn this task's address: {error}", file=sys.stderr)
        return 1
    os.execvp(argv[0], argv)  # never returns


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
