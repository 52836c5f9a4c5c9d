"""`python -m <service>`: one service's app under uvicorn, logging configured first.

Every service serves the same way: settings from the environment (validated before anything
starts), the fleet's log format for every logger (uvicorn's included, hence `log_config=None`),
and a graceful shutdown bounded by the settings' `shutdown_grace_seconds`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from shared.logging import configure_logging
from shared.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


def serve(
    service: str,
    create_app: Callable[[S], FastAPI],
    settings: S,
    **uvicorn_options: Any,
) -> None:
    """Configure logging, build the app from `settings` and serve it until SIGTERM or SIGINT."""
    configure_logging(service, settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.bind_port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        **uvicorn_options,
    )
