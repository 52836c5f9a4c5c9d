"""The media-events queue's handler: each worker event becomes `media_update` frames."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from message_service.service import MessagingService
from shared.logging import request_id_var
from shared.models import MediaEvent
from shared.sqs_consumer import PoisonMessage, QueueMessage

log = logging.getLogger("ferry.messages.media_events")


class MediaEventsHandler:
    def __init__(self, service: MessagingService) -> None:
        self._service = service

    async def handle(self, message: QueueMessage) -> str:
        try:
            event = MediaEvent.model_validate_json(message.body)
        except ValidationError as error:
            raise PoisonMessage(f"not a media event: {error.error_count()} problems") from error
        # The id of the request that opened the upload slot: one upload is one thread of logs
        # across the Media Service, the worker and here.
        token = request_id_var.set(message.attributes.get("request_id"))
        try:
            delivered = await self._service.on_media_event(event)
            self._service.metrics.media_updates.inc(delivered)
            log.info(
                "media event handled: %s, media_update pushed to %d devices",
                event.state.value,
                delivered,
                extra={
                    "media_id": event.media_id,
                    "state": event.state.value,
                    "delivered": delivered,
                    "redelivered": message.redelivered,
                },
            )
        finally:
            request_id_var.reset(token)
        return "ok"

    async def give_up(self, message: QueueMessage) -> None:
        """Nothing is stuck when an update is lost: the media document has the state."""
