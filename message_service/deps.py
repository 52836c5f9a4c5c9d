"""Typed dependencies: routes receive the service built in the lifespan, never a global."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from message_service.service import MessagingService
from shared.auth import Identity
from shared.http import current_identity


def get_messaging(request: Request) -> MessagingService:
    service: MessagingService = request.app.state.messaging
    return service


Messaging = Annotated[MessagingService, Depends(get_messaging)]


async def admitted_caller(
    service: Messaging, identity: Annotated[Identity, Depends(current_identity)]
) -> Identity:
    """The caller, once its device is admitted (403 `too_many_devices` beyond the limit)."""
    await service.admit_device(identity.user_id, identity.device_id)
    return identity


Caller = Annotated[Identity, Depends(admitted_caller)]
