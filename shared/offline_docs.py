"""`/docs` and `/redoc` from the Swagger UI and ReDoc assets shipped in the fastapi-offline wheel,
not a CDN: the pages work on a machine (or in a browser) with no internet access.

fastapi-offline's own `FastAPIOffline()` builds a `StaticFiles` that stats its directory when
constructed; apps are built inside running event loops (tests, lifespans), where that is a blocking
call. So the same routes are installed here with `check_dir=False` (the directory is in the wheel).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

STATIC_PATH = Path(fastapi_offline.__file__).parent / "static"
STATIC_URL = "/static-offline-docs"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

# Static responses guess their content type; the first guess reads the system's mime tables from
# disk. Done here, at import (every service imports this through shared.http), so that read never
# happens inside the event loop: not for the docs assets, not for the gateway's web client.
mimetypes.init()


def offline_docs_app(
    *,
    title: str,
    version: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]],
) -> FastAPI:
    """A FastAPI app whose documentation pages need nothing from the internet."""
    app = FastAPI(
        title=title,
        version=version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=OAUTH2_REDIRECT_URL,
    )
    app.mount(
        STATIC_URL,
        StaticFiles(directory=STATIC_PATH, check_dir=False),
        name="static-offline-docs",
    )

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
            with_google_fonts=False,
            redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        )

    return app
