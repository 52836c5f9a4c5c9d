"""Cross-origin access for browsers (API.md v1.1 "Browsers and players").

A page served from another origin (the gateway's web client, a team's own web app) calls the
Media and Message Services directly with `Authorization: Bearer`: the browser first sends a
preflight, then needs `Access-Control-Allow-Origin` on every answer, errors included. No cookies
are involved, so credentials are never allowed and a listed origin gains nothing a token does not
already grant.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

# What a page may read from an answer besides the CORS-safelisted headers: the upload ETag (an
# S3-style client records it), where a created resource lives, when to retry, which request it was.
EXPOSED_HEADERS = ("ETag", "Location", "Retry-After", "X-Request-ID")
ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Browsers cache a preflight answer this long (Chromium caps it at 2 h).
PREFLIGHT_MAX_AGE_SECONDS = 600


def parse_origins(value: str) -> tuple[str, ...]:
    """`CORS_ALLOWED_ORIGINS`: comma-separated origins (`*`: any); blanks, trailing `/` dropped."""
    return tuple(
        origin.strip().rstrip("/") for origin in value.split(",") if origin.strip().rstrip("/")
    )


def install_cors(app: FastAPI, origins: tuple[str, ...]) -> None:
    """Answer preflights and mark every answer readable by `origins`; nothing when empty.

    Call after every other middleware: it must be the outermost, so refusals made by inner layers
    (413, 431, 401, 500) still reach the page as readable errors rather than opaque failures.
    """
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=list(ALLOWED_METHODS),
        # Any request header: Authorization, Content-Type, X-Request-ID, Idempotency-Key, ...
        allow_headers=["*"],
        allow_credentials=False,
        expose_headers=list(EXPOSED_HEADERS),
        max_age=PREFLIGHT_MAX_AGE_SECONDS,
    )
