"""`python -m gateway`: serve the Edge Gateway with settings from the environment."""

from __future__ import annotations

from gateway.app import create_app
from gateway.settings import Settings
from gateway.websocket import GatewayWebSocket
from shared.serve import parse_command_line, serve


def main() -> None:
    parse_command_line("gateway")
    settings = Settings()
    # HTTP is FastAPI; every WebSocket upgrade goes to our own protocol class (uvicorn's `ws=`
    # option), which reads its limits from the settings. On SIGTERM uvicorn stops listening,
    # calls `shutdown()` on each WebSocket (1001), waits until they have deregistered, and
    # then the lifespan closes the clients.
    serve("gateway", create_app, settings, ws=GatewayWebSocket)


if __name__ == "__main__":
    main()
