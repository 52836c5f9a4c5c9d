"""`python -m media_service`: serve the Media Service with settings from the environment."""

from __future__ import annotations

import uvicorn

from media_service.app import create_app
from media_service.settings import Settings
from shared.logging import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging("media_service", settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.bind_port,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
