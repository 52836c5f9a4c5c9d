"""The one way a service opens an HTTP client to another service's internal API.

Every call carries the internal token and the request id of the work it is part of (so one
request's logs join across services); the timeout and connection limits are set here once.
"""

from __future__ import annotations

import httpx

from shared.auth import INTERNAL_TOKEN_HEADER
from shared.logging import REQUEST_ID_HEADER, new_request_id, request_id_var


def internal_client(
    token: str,
    *,
    timeout: float,
    base_url: str = "",
    max_connections: int | None = None,
    mint_request_ids: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for internal calls; open it with `async with` in a lifespan.

    `mint_request_ids`: a call made outside any request (none in context) gets a fresh id, for
    callers whose every call starts a new piece of work (the gateway's relayed frames).
    """

    async def add_request_id(request: httpx.Request) -> None:
        request_id = request_id_var.get() or (new_request_id() if mint_request_ids else None)
        if request_id:
            request.headers[REQUEST_ID_HEADER] = request_id

    limits = (
        httpx.Limits(max_connections=max_connections)
        if max_connections is not None
        else httpx.Limits(max_connections=100, max_keepalive_connections=20)
    )
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout,
        limits=limits,
        headers={INTERNAL_TOKEN_HEADER: token},
        event_hooks={"request": [add_request_id]},
        transport=transport,  # None: the network; tests pass an in-process one
    )
