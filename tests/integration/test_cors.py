"""CORS on the Media and Message Services (API.md v1.1 "Browsers and players").

A page on a listed origin gets its preflight answered and can read answers (errors too),
`ETag` and `Location` exposed; another origin gets nothing it could read."""

from __future__ import annotations

import httpx

from tests.integration.conftest import Fleet


async def test_a_listed_origin_gets_preflights_and_readable_answers(fleet: Fleet) -> None:
    origin = fleet.gateway_urls[-1]  # the fleet lists its gateways' web clients
    async with httpx.AsyncClient(timeout=10) as http:
        for service_url in (fleet.media_url, fleet.message_url):
            preflight = await http.request(
                "OPTIONS",
                f"{service_url}/v1/conversations",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type,x-request-id",
                },
            )
            assert preflight.status_code == 200, (service_url, preflight.text)
            assert preflight.headers["access-control-allow-origin"] == origin
            assert "POST" in preflight.headers["access-control-allow-methods"]
            assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

            # An error answer is readable too (the page shows the contract's error body).
            refused = await http.get(f"{service_url}/v1/media/nope", headers={"Origin": origin})
            assert refused.status_code >= 400
            assert refused.headers["access-control-allow-origin"] == origin
            exposed = refused.headers["access-control-expose-headers"].lower()
            assert "etag" in exposed
            assert "location" in exposed


async def test_an_unlisted_origin_gets_nothing_readable(fleet: Fleet) -> None:
    stranger = "http://evil.example"
    async with httpx.AsyncClient(timeout=10) as http:
        for service_url in (fleet.media_url, fleet.message_url):
            preflight = await http.request(
                "OPTIONS",
                f"{service_url}/v1/conversations",
                headers={"Origin": stranger, "Access-Control-Request-Method": "POST"},
            )
            assert preflight.status_code >= 400
            assert "access-control-allow-origin" not in preflight.headers
            answer = await http.get(f"{service_url}/v1/media/nope", headers={"Origin": stranger})
            assert "access-control-allow-origin" not in answer.headers
