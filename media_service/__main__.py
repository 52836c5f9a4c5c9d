"""`python -m media_service`: serve the Media Service with settings from the environment."""

from __future__ import annotations

from media_service.app import create_app
from media_service.settings import Settings
from shared.serve import parse_command_line, serve


def main() -> None:
    parse_command_line("media_service")
    serve("media_service", create_app, Settings())


if __name__ == "__main__":
    main()
