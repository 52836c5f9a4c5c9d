"""Typed dependencies: routes receive the service built in the lifespan, never a global."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from message_service.service import MessagingService


def get_messaging(request: Request) -> MessagingService:
    service: MessagingService = request.app.state.messaging
    return service


Messaging = Annotated[MessagingService, Depends(get_messaging)]
