"""`python -m message_service`: serve the Message Service with settings from the environment."""

from __future__ import annotations

from message_service.app import create_app
from message_service.settings import Settings
from shared.serve import parse_command_line, serve


def main() -> None:
    parse_command_line("message_service")
    serve("message_service", create_app, Settings())


if __name__ == "__main__":
    main()
