"""The web client as a newcomer meets it: the page, its configuration, dev sign-in, the live
connection, and offline `/docs` on every service."""

from __future__ import annotations

from typing import Any

from devstack.fleet import LocalFleet
from tests.browser.conftest import PageFactory, fresh_user

LOCAL_HOSTS = ("127.0.0.1", "localhost")


async def test_sign_in_goes_online_and_the_page_degrades_without_the_list(
    web_fleet: LocalFleet, new_page: PageFactory
) -> None:
    page: Any = await new_page("alice")
    gateway = web_fleet.url("gateway")
    await page.goto(gateway + "/")
    config = await page.evaluate("fetch('/config.json').then(r => r.json())")
    assert config == {
        "media_url": web_fleet.url("media_service"),
        "message_url": web_fleet.url("message_service"),
        "dev_login": True,
    }
    alice = fresh_user("alice")
    await page.fill("#login-user", alice)
    await page.click("#login-button")
    await page.wait_for_selector("#chat:not([hidden])")
    assert alice in await page.text_content("#me")
    # The WebSocket is same-origin with the page: it connects with `?token=`.
    await page.wait_for_function("document.getElementById('ws-state').textContent === 'online'")
    # Whether or not the conversation list answers, the page is usable (a note says why not).
    await page.wait_for_function(
        "window.ferry.listAvailable === false"
        " || document.getElementById('list-note').textContent === ''"
    )
    # A reload keeps the tab's user (sessionStorage) and reconnects.
    await page.reload()
    await page.wait_for_function("document.getElementById('ws-state').textContent === 'online'")
    assert alice in await page.text_content("#me")


async def test_docs_render_with_no_internet(web_fleet: LocalFleet, new_page: PageFactory) -> None:
    page: Any = await new_page("docs")
    outside: list[str] = []

    async def only_local(route: Any) -> None:
        host = route.request.url.split("/")[2].split(":")[0]
        if host in LOCAL_HOSTS:
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_local)
    for service in ("gateway", "media_service", "message_service"):
        await page.goto(web_fleet.url(service) + "/docs")
        # Swagger UI drew the operations from the service's own openapi.json.
        await page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert outside == []
