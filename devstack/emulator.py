"""The embedded AWS emulator: moto's server (S3, SQS, DynamoDB, ...) in this process.

`python -m devstack.emulator [--host 127.0.0.1] [--port 4566]` prints one line
`emulator listening on http://HOST:PORT` once it accepts connections (port 0 picks a free one;
the line says which), then serves until SIGINT or SIGTERM. A taken port is reported and exits 2
instead of hanging: moto's server thread would die silently and never signal readiness.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from devstack.ports import EMULATOR_PORT, LOCALHOST, port_is_free

# What the process wrapper (`devstack.processes.Emulator`) waits for on the first line.
READY_PREFIX = "emulator listening on "
EXIT_PORT_TAKEN = 2


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.emulator", description=__doc__)
    parser.add_argument("--host", default=LOCALHOST)
    parser.add_argument("--port", type=int, default=EMULATOR_PORT, help="0 picks a free port")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # One line per request from werkzeug would drown the fleet's own logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if not port_is_free(args.host, args.port):
        print(
            f"emulator: {args.host}:{args.port} is already in use "
            "(another emulator or LocalStack running?)",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_PORT_TAKEN

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    # Imported here, not at the top: moto is heavy, and this module's constants are not.
    from moto.server import ThreadedMotoServer

    from devstack.moto_atomicity import serialise_dynamodb_item_operations

    serialise_dynamodb_item_operations()

    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
