"""`python -m transcode_worker`: run the worker (and its health endpoints) from the environment."""

from __future__ import annotations

from shared.serve import parse_command_line, serve
from transcode_worker.app import create_app
from transcode_worker.settings import Settings


def main() -> None:
    parse_command_line("transcode_worker")
    # uvicorn handles SIGTERM and SIGINT: it stops serving, then runs the lifespan's shutdown,
    # which stops the consumer and gives jobs in flight the grace period.
    serve("transcode_worker", create_app, Settings())


if __name__ == "__main__":
    main()
