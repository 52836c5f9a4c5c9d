"""WebSocket frames of the contract (`GET /v1/ws`): text frames, one JSON object each.

Client frames are parsed with `parse_client_frame`; server frames are built from these models
(the Message Service builds `message` and `media_update` frames, the gateway the rest).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.models import MediaRef, MediaState, Message, MessageIds, Variant


class Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- client to server ---------------------------------------------------------------------


class SendFrame(Frame):
    type: Literal["send"]
    client_msg_id: Annotated[str, Field(min_length=1, max_length=128)]
    conversation_id: Annotated[str, Field(min_length=1, max_length=128)]
    text: Annotated[str | None, Field(max_length=8000)] = None
    media: Annotated[list[MediaRef], Field(max_length=10)] = Field(default_factory=list)


class ReceivedFrame(Frame):
    type: Literal["received"]
    message_ids: MessageIds


class PingFrame(Frame):
    type: Literal["ping"]


class AuthFrame(Frame):
    """A fresh token for the same user and device: the session lives on until it expires."""

    type: Literal["auth"]
    token: Annotated[str, Field(min_length=1, max_length=8192)]


ClientFrame = Annotated[
    SendFrame | ReceivedFrame | PingFrame | AuthFrame, Field(discriminator="type")
]
CLIENT_FRAME: TypeAdapter[SendFrame | ReceivedFrame | PingFrame | AuthFrame] = TypeAdapter(
    ClientFrame
)


def parse_client_frame(text: str) -> SendFrame | ReceivedFrame | PingFrame | AuthFrame:
    """Raises pydantic's ValidationError for anything that is not a known client frame."""
    return CLIENT_FRAME.validate_json(text)


# --- server to client ---------------------------------------------------------------------


class MessageFrame(Frame):
    type: Literal["message"] = "message"
    message: Message


class SentFrame(Frame):
    type: Literal["sent"] = "sent"
    client_msg_id: str
    message_id: str
    seq: int


class ErrorFrame(Frame):
    type: Literal["error"] = "error"
    code: str
    message: str
    client_msg_id: str | None = None


class PongFrame(Frame):
    type: Literal["pong"] = "pong"


class AuthenticatedFrame(Frame):
    """The answer to an accepted `auth` frame: the session now ends at `expires_at`."""

    type: Literal["authenticated"] = "authenticated"
    expires_at: int | None = None


class MediaUpdateFrame(Frame):
    type: Literal["media_update"] = "media_update"
    media_id: str
    state: MediaState
    meta: dict[str, Any] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=list)


class MessageDeletedFrame(Frame):
    """A message was deleted (by its sender or a conversation admin): show its tombstone."""

    type: Literal["message_deleted"] = "message_deleted"
    conversation_id: str
    message_id: str
    seq: int


def dump_frame(frame: Frame) -> dict[str, Any]:
    return frame.model_dump(mode="json", exclude_none=True)
