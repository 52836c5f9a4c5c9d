"""The gateway's HTTP endpoint for the Message Service's push (the clients' WebSocket is
gateway.websocket, outside ASGI)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import GatewayDep
from shared.http import InternalCaller
from shared.models import ErrorBody, PushRequest, PushResult

router = APIRouter()


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
