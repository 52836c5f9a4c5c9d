"""`python -m <service>`: one service's app under uvicorn, logging configured first.

Every service serves the same way: settings from the environment (validated before anything
starts), the fleet's log format for every logger (uvicorn's included, hence `log_config=None`),
and a graceful shutdown bounded by the settings' `shutdown_grace_seconds`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from shared.logging import configure_logging
from shared.settings import ServiceSettings
from shared.version import __version__

S = TypeVar("S", bound=ServiceSettings)


def parse_command_line(service: str, argv: Sequence[str] | None = None) -> None:
    """`--version` and `--help`, and nothing else: every setting comes from the environment.

    Runs before the settings are read, so `--version` answers even where they would not validate.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m {service}",
        description="Settings come from the environment (docs/configuration.md).",
    )
    parser.add_argument("--version", action="version", version=f"{service} {__version__}")
    parser.parse_args(argv)


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
