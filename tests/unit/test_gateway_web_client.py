"""The gateway's web client endpoints: the page, `/config.json`, and dev sign-in only outside
production. No lifespan runs: these routes need no AWS client."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from shared.auth import verify_token
from shared.settings import DEV_JWT_SECRET

PRODUCTION = {
    "environment": "production",
    "auth_jwt_secret": "p" * 40,
    "internal_token": "i" * 40,
    "advertised_url": "http://10.0.0.7:8080",
    "public_media_url": "https://media.example.com/",
    "public_message_url": "https://messages.example.com",
}


def client(settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


async def test_the_page_and_its_configuration_in_development() -> None:
    async with client(Settings(environment="development")) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert '<script type="module" src="js/app.js">' in page.text
        assert (await http.get("/vendor/hls.light.min.js")).status_code == 200
        assert (await http.get("/config.json")).json() == {
            "media_url": "http://127.0.0.1:8081",
            "message_url": "http://127.0.0.1:8082",
            "dev_login": True,
        }
        minted = await http.post("/dev/token", json={"user_id": "alice", "device_id": "web"})
        assert minted.status_code == 200
        identity = verify_token(minted.json()["token"], DEV_JWT_SECRET)
        assert (identity.user_id, identity.device_id) == ("alice", "web")


@pytest.mark.parametrize("user_id", ["", "a/b", "x" * 65, "bad\nname"])
async def test_dev_sign_in_refuses_odd_names(user_id: str) -> None:
    async with client(Settings(environment="development")) as http:
        answer = await http.post("/dev/token", json={"user_id": user_id})
        assert answer.status_code == 422


async def test_production_has_no_dev_sign_in_and_tells_its_public_addresses() -> None:
    async with client(Settings(**PRODUCTION)) as http:  # type: ignore[arg-type]
        assert (await http.get("/config.json")).json() == {
            "media_url": "https://media.example.com",
            "message_url": "https://messages.example.com",
            "dev_login": False,
        }
        refused = await http.post("/dev/token", json={"user_id": "alice"})
        assert refused.status_code == 404
        # Unknown paths still answer 404 (the static mount takes what no route matched).
        assert (await http.get("/nope.js")).status_code == 404


async def test_docs_are_served_from_local_assets() -> None:
    async with client(Settings(environment="development")) as http:
        docs = await http.get("/docs")
        assert "cdn." not in docs.text
        assert "/static-offline-docs/swagger-ui-bundle.js" in docs.text
        bundle = await http.get("/static-offline-docs/swagger-ui-bundle.js")
        assert bundle.status_code == 200
