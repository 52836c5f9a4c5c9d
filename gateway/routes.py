"""The gateway's endpoints: the clients' WebSocket and the Message Service's push."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from gateway.deps import GatewayDep
from gateway.gateway import Gateway
from gateway.message_client import MessageServiceUnavailable, SendRejected
from gateway.session import Session
from shared.auth import TokenVerifier, bearer_token
from shared.errors import DependencyUnavailable, Unauthorized
from shared.http import InternalCaller, error_response
from shared.models import ErrorBody, PushRequest, PushResult

log = logging.getLogger("ferry.gateway.routes")

router = APIRouter()


async def websocket_session(websocket: WebSocket) -> None:
    """The client's connection (protocol in docs); the token is checked before the upgrade."""
    gateway: Gateway = websocket.app.state.gateway
    # Browsers cannot set headers on a WebSocket, hence `?token=` as well.
    token = bearer_token(websocket.headers.get("authorization")) or websocket.query_params.get(
        "token", ""
    )
    try:
        verifier: TokenVerifier = websocket.app.state.token_verifier
        identity = await verifier.verify(token)
    except (Unauthorized, DependencyUnavailable) as error:
        # An HTTP answer instead of the upgrade (ASGI's WebSocket denial response), so the
        # client learns why; a rejected token never becomes a connection.
        await websocket.send_denial_response(
            error_response(error.status, error.error_code, error.message)
        )
        return
    try:
        await gateway.messages.admit(identity.user_id, identity.device_id)
    except SendRejected as refusal:  # too many devices: a 403 instead of the upgrade
        await websocket.send_denial_response(
            error_response(refusal.status, refusal.code, refusal.message)
        )
        return
    except MessageServiceUnavailable as error:
        # Nobody can say now; the backlog fetch asks again (and nothing can be sent meanwhile).
        log.warning("device admission unavailable: %s", error)
    await Session(gateway, websocket, identity).run()


# A plain Starlette route, not FastAPI's: dependency injection would keep its own exit stacks
# and solved values alive for the whole life of every connection (~4 KiB each, measured).
websocket_routes = [WebSocketRoute("/v1/ws", websocket_session)]


@router.post(
    "/internal/push",
    response_model=PushResult,
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    tags=["internal"],
    include_in_schema=False,  # internal routes stay out of the public OpenAPI document
    summary="Deliver frames to devices connected to this gateway",
)
async def push(body: PushRequest, _: InternalCaller, gateway: GatewayDep) -> PushResult:
    """`delivered` counts frames queued for a connected device; the rest stay pending for
    their devices at the Message Service and arrive on reconnect."""
    delivered = 0
    for delivery in body.deliveries:
        connection = gateway.connections.get(delivery.user_id, delivery.device_id)
        if connection is not None and connection.push(delivery.frame):
            delivered += 1
    not_connected = len(body.deliveries) - delivered
    gateway.metrics.pushes.labels("delivered").inc(delivered)
    gateway.metrics.pushes.labels("not_connected").inc(not_connected)
    return PushResult(delivered=delivered, not_connected=not_connected)
