"""A media event handled while a message referencing that media was being stored found no
reference to update; the send catches up on it once the references exist."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from message_service.metrics import MessageMetrics
from message_service.service import MessagingService
from message_service.settings import Settings
from shared.errors import DependencyUnavailable
from shared.models import (
    MediaEvent,
    MediaInfo,
    MediaState,
    MediaType,
    Message,
    MessageMedia,
    Variant,
)

THUMB = Variant(name="thumb_320", content_type="image/webp", size=100, width=320, height=240)


class FakeMedia:
    def __init__(self, state: MediaState | None, *, down: bool = False) -> None:
        self.state = state
        self.down = down
        self.asked: list[str] = []

    async def info(self, media_id: str) -> MediaInfo | None:
        self.asked.append(media_id)
        if self.down:
            raise DependencyUnavailable("the media service did not answer; retry")
        if self.state is None:
            return None
        return MediaInfo(
            media_id=media_id,
            owner="alice",
            state=self.state,
            media_type=MediaType.IMAGE,
            meta={"width": 640},
            variants=[THUMB] if self.state is MediaState.READY else [],
        )


class Recording(MessagingService):
    def __init__(self, media: FakeMedia) -> None:
        unused: Any = None
        super().__init__(
            settings=Settings(),
            conversations=unused,
            messages=unused,
            deliveries=unused,
            devices=unused,
            refs=unused,
            media=media,  # type: ignore[arg-type]
            pusher=unused,
            metrics=MessageMetrics(CollectorRegistry()),
            limiter=unused,
        )
        self.events: list[MediaEvent] = []

    async def on_media_event(self, event: MediaEvent) -> int:
        self.events.append(event)
        return 1


def _message(*states: MediaState) -> Message:
    return Message(
        message_id="c_1#1",
        conversation_id="c_1",
        seq=1,
        sender="alice",
        sender_device="default",
        client_msg_id="m",
        created_at=datetime.now(UTC),
        media=[
            MessageMedia(media_id=f"m_{n}", media_type=MediaType.IMAGE, state=state)
            for n, state in enumerate(states)
        ],
    )


async def test_a_media_that_became_ready_meanwhile_is_announced() -> None:
    service = Recording(FakeMedia(MediaState.READY))
    await service._catch_up(_message(MediaState.PROCESSING))
    [event] = service.events
    assert (event.media_id, event.state) == ("m_0", MediaState.READY)
    assert event.variants == [THUMB]
    assert event.meta == {"width": 640}


@pytest.mark.parametrize("state", [MediaState.PROCESSING, None])
async def test_nothing_is_announced_when_nothing_changed(state: MediaState | None) -> None:
    service = Recording(FakeMedia(state))
    await service._catch_up(_message(MediaState.PROCESSING))
    assert service.events == []


async def test_settled_media_are_not_asked_about_again() -> None:
    media = FakeMedia(MediaState.READY)
    service = Recording(media)
    await service._catch_up(_message(MediaState.READY, MediaState.UPLOADED))
    assert media.asked == ["m_1"]
    assert [event.media_id for event in service.events] == ["m_1"]


async def test_a_failed_catch_up_does_not_fail_the_stored_send() -> None:
    service = Recording(FakeMedia(MediaState.READY, down=True))
    await service._catch_up(_message(MediaState.UPLOADED))
    assert service.events == []
