"""`python -m transcode_worker`: run the worker (and its health endpoints) from the environment."""

from __future__ import annotations

import uvicorn

from shared.logging import configure_logging
from transcode_worker.app import create_app
from transcode_worker.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging("transcode_worker", settings.log_level, json_lines=settings.log_json)
    # uvicorn handles SIGTERM and SIGINT: it stops serving, then runs the lifespan's shutdown,
    # which stops the consumer and gives jobs in flight the grace period.
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.bind_port,
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


if __name__ == "__main__":
    main()
