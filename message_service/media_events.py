"""The media-events queue's handler: each worker event becomes `media_update` frames."""

from __future__ import annotations

from pydantic import ValidationError

from message_service.service import MessagingService
from shared.logging import request_id_var
from shared.models import MediaEvent
from shared.sqs_consumer import PoisonMessage, QueueMessage


class MediaEventsHandler:
    def __init__(self, service: MessagingService) -> None:
        self._service = service

    async def handle(self, message: QueueMessage) -> str:
        try:
            event = MediaEvent.model_validate_json(message.body)
        except ValidationError as error:
            raise PoisonMessage(f"not a media event: {error.error_count()} problems") from error
        token = request_id_var.set(message.attributes.get("request_id"))
        try:
            delivered = await self._service.on_media_event(event)
        finally:
            request_id_var.reset(token)
        self._service.metrics.media_updates.inc(delivered)
        return "ok"

    async def give_up(self, message: QueueMessage) -> None:
        """Nothing is stuck when an update is lost: the media document has the state."""
