"""`python -m message_service`: serve the Message Service with settings from the environment."""

from __future__ import annotations

from message_service.app import create_app
from message_service.settings import Settings
from shared.serve import parse_command_line, serve


def main() -> None:
    parse_command_line("message_service")
    settings = Settings()
    serve("message_service", create_app, settings, graceful_seconds=settings.shutdown_grace_seconds)


if __name__ == "__main__":
    main()
