"""`python -m gateway`: serve the Edge Gateway with settings from the environment."""

from __future__ import annotations

from gateway.app import create_app
from gateway.protocol import protocol_class
from gateway.settings import Settings
from shared.serve import parse_command_line, serve


def main() -> None:
    parse_command_line("gateway")
    settings = Settings()
    # On SIGTERM uvicorn stops listening, our protocol closes every WebSocket with 1001, the
    # sessions deregister themselves, and then the lifespan closes the clients.
    serve(
        "gateway",
        create_app,
        settings,
        ws=protocol_class(settings.close_timeout_seconds),
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=settings.permessage_deflate,
        ws_ping_interval=settings.ping_interval_seconds,
        ws_ping_timeout=settings.ping_timeout_seconds,
    )


if __name__ == "__main__":
    main()
