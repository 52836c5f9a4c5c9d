"""The web client: static files under `gateway/web/` at `/`, the `/config.json` that tells the
page where the public services are, and, outside production only, `POST /dev/token` so the page
can pick a dev user without a terminal.

Plain files, no build step: ES modules plus pinned vendored bundles (`web/vendor/VERSIONS.md`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from gateway.settings import Settings
from shared.auth import DEFAULT_DEVICE, issue_token
from shared.errors import NotFound

WEB_ROOT = Path(__file__).parent / "web"
DEV_TOKEN_TTL = timedelta(hours=12)
# The characters a dev user or device id may have: what the page shows and what keys hold.
DEV_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

router = APIRouter(tags=["web client"])


class WebConfig(BaseModel):
    """What the page needs to know about the deployment."""

    media_url: str
    message_url: str
    dev_login: bool = Field(description="`POST /dev/token` is available (never in production)")


class DevTokenRequest(BaseModel):
    user_id: str = Field(pattern=DEV_ID_PATTERN)
    device_id: str = Field(DEFAULT_DEVICE, pattern=DEV_ID_PATTERN)


class DevToken(BaseModel):
    token: str
    user_id: str
    device_id: str


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]


def dev_login_enabled(settings: Settings) -> bool:
    # Anyone who reaches the endpoint can be anyone: development and test fleets only.
    return settings.environment != "production"


@router.get("/config.json", response_model=WebConfig, summary="The web client's configuration")
async def web_config(settings: SettingsDep) -> WebConfig:
    return WebConfig(
        media_url=(settings.public_media_url or settings.media_service_url).rstrip("/"),
        message_url=(settings.public_message_url or settings.message_service_url).rstrip("/"),
        dev_login=dev_login_enabled(settings),
    )


@router.post(
    "/dev/token",
    response_model=DevToken,
    summary="Mint a dev token for any user (development and test only; 404 in production)",
)
async def dev_token(body: DevTokenRequest, settings: SettingsDep) -> DevToken:
    if not dev_login_enabled(settings):
        raise NotFound("no such endpoint")
    token = issue_token(
        body.user_id, settings.auth_jwt_secret, device_id=body.device_id, ttl=DEV_TOKEN_TTL
    )
    return DevToken(token=token, user_id=body.user_id, device_id=body.device_id)


def install_web_client(app: FastAPI, settings: Settings) -> None:
    """Add the web client's routes; call last: the static mount at `/` takes what is left."""
    app.include_router(router)
    if settings.web_client_enabled:
        app.mount(
            "/", StaticFiles(directory=WEB_ROOT, html=True, check_dir=False), name="web-client"
        )
