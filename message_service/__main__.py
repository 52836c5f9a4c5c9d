"""`python -m message_service`: serve the Message Service with settings from the environment."""

from __future__ import annotations

import uvicorn

from message_service.app import create_app
from message_service.settings import Settings
from shared.logging import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging("message_service", settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.bind_port,
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


if __name__ == "__main__":
    main()
