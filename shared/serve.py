"""`python -m <service>`: one service's app under uvicorn, logging configured first.

Every service serves the same way: settings from the environment (validated before anything
starts), the fleet's log format for every logger (uvicorn's included, hence `log_config=None`),
and a graceful shutdown bounded by `graceful_seconds`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import uvicorn
from fastapi import FastAPI

from shared.logging import configure_logging


class ServedSettings(Protocol):
    @property
    def bind_host(self) -> str: ...
    @property
    def bind_port(self) -> int: ...
    @property
    def log_level(self) -> str: ...
    @property
    def log_json(self) -> bool: ...


S = TypeVar("S", bound=ServedSettings)


def serve(
    service: str,
    create_app: Callable[[S], FastAPI],
    settings: S,
    *,
    graceful_seconds: int,
    **uvicorn_options: Any,
) -> None:
    """Configure logging, build the app from `settings` and serve it until SIGTERM or SIGINT."""
    configure_logging(service, settings.log_level, json_lines=settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.bind_port,
        log_config=None,
        timeout_graceful_shutdown=graceful_seconds,
        **uvicorn_options,
    )
