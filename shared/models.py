"""Pydantic models of the public contract (docs/api.md): the one definition of each shape."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# C0 and C1 controls and DEL: a NUL, CR or LF in a stored filename ends up in headers and logs.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ContractModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MediaState(StrEnum):
    AWAITING_UPLOAD = "awaiting_upload"
    AWAITING_PROOF = "awaiting_proof"
    UPLOADED = "uploaded"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    BLOCKED = "blocked"
    EXPIRED = "expired"


class MediaType(StrEnum):
    IMAGE = "image"
    VOICE = "voice"
    VIDEO = "video"
    DOCUMENT = "document"


class ErrorDetail(ContractModel):
    code: str
    message: str


class ErrorBody(ContractModel):
    error: ErrorDetail


# --- upload slots -------------------------------------------------------------------------


class UploadRequest(ContractModel):
    content_type: Annotated[str, Field(min_length=3, max_length=255)]
    size: Annotated[int, Field(ge=1, description="exact length in bytes")]
    sha256: Annotated[str, Field(description="64 lowercase hex digits")]
    filename: Annotated[str | None, Field(min_length=1, max_length=255)] = None

    @field_validator("filename")
    @classmethod
    def _filename_has_no_controls(cls, value: str | None) -> str | None:
        if value is not None and CONTROL_CHARACTERS.search(value):
            raise ValueError("filename must not contain control characters")
        return value

    @field_validator("sha256")
    @classmethod
    def _sha256_is_lowercase_hex(cls, value: str) -> str:
        if not SHA256_HEX.fullmatch(value):
            raise ValueError("sha256 must be 64 lowercase hexadecimal digits")
        return value

    @field_validator("content_type")
    @classmethod
    def _normalise_content_type(cls, value: str) -> str:
        # Parameters (`; charset=...`) do not change what the bytes are.
        return value.split(";", 1)[0].strip().lower()


class SingleUpload(ContractModel):
    method: Literal["PUT"] = "PUT"
    url: str
    headers: dict[str, str]
    expires_at: datetime


class MultipartUpload(ContractModel):
    method: Literal["MULTIPART"] = "MULTIPART"
    part_size: int
    part_count: int
    expires_at: datetime


class DedupChallenge(ContractModel):
    offset: int
    length: int
    nonce: str


class UploadSlot(ContractModel):
    """The answer to `POST /v1/media/uploads`: exactly one of `upload` or `dedup` is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    media_id: str
    state: MediaState
    media_type: MediaType
    upload: SingleUpload | MultipartUpload | None = None
    dedup: DedupChallenge | None = None


class ProofRequest(ContractModel):
    proof: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$", description="hex SHA-256")]


# --- multipart ----------------------------------------------------------------------------


class PartsRequest(ContractModel):
    part_numbers: Annotated[list[Annotated[int, Field(ge=1, le=10000)]], Field(min_length=1)]


class SignedPart(ContractModel):
    part_number: int
    url: str
    headers: dict[str, str]
    expires_at: datetime


class SignedParts(ContractModel):
    parts: list[SignedPart]


class ReceivedPart(ContractModel):
    part_number: int
    size: int
    etag: str


class ReceivedParts(ContractModel):
    parts: list[ReceivedPart]


class CompletedPart(ContractModel):
    part_number: Annotated[int, Field(ge=1, le=10000)]
    etag: Annotated[str, Field(min_length=1, max_length=128)]


class CompleteRequest(ContractModel):
    parts: Annotated[list[CompletedPart], Field(min_length=1)]


# --- the media document -------------------------------------------------------------------


class Variant(ContractModel):
    name: str
    content_type: str
    size: int
    width: int | None = None
    height: int | None = None


class MediaDocument(ContractModel):
    media_id: str
    state: MediaState
    media_type: MediaType
    content_type: str
    size: int
    sha256: str
    created_at: datetime
    filename: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=list)
    error: ErrorDetail | None = None
    progress: Annotated[
        int | None, Field(ge=0, le=100, description="while processing a long job: percent done")
    ] = None
    # Shown to admins only: never serialized by default, the admin view adds it.
    legal_hold: bool | None = Field(None, exclude=True, description="admins only")
    quarantined: bool | None = Field(None, exclude=True, description="admins only")
    nsfw_score: float | None = Field(
        None, exclude=True, ge=0, le=1, description="admins only: the NSFW classifier's score"
    )

    def body(self) -> dict[str, Any]:
        """The JSON answer: the admin-only fields appear only where they were filled in (for
        an admin), since the schema dump always leaves them out."""
        payload = self.model_dump(mode="json")
        for name in ("legal_hold", "quarantined", "nsfw_score"):
            value = getattr(self, name)
            if value is not None:
                payload[name] = value
        return payload


class DownloadUrl(ContractModel):
    url: str
    expires_at: datetime


# --- events between services --------------------------------------------------------------


class MediaEvent(ContractModel):
    """Published by the worker on every media state change (media-events queue).

    The Message Service turns it into `media_update` frames for the conversations that
    reference the media.
    """

    media_id: str
    state: MediaState
    media_type: MediaType
    meta: dict[str, Any] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=list)
    error: ErrorDetail | None = None
    occurred_at: datetime
    # An admin lifted a quarantine: the state steps back from `blocked` to what it was, which
    # no state-machine transition allows; consumers accept it from `blocked` for that reason.
    restored: bool = False


class MediaReadAccess(ContractModel):
    """The Message Service's answer to "may user U read media M through a conversation?"

    `GET /internal/media/{media_id}/readers/{user_id}` on the Message Service.
    """

    readable: bool


class MediaReferences(ContractModel):
    """`GET /internal/media/{media_id}/references` on the Message Service (the authority on
    references): how many messages reference the media now, and since when none does."""

    referenced: bool
    references: int = 0
    first_referenced_at: datetime | None = None
    last_referenced_at: datetime | None = None
    # Set once a message deletion took the count to zero (cleared when a message references
    # it again): the sweeper's "unsent from that moment".
    unreferenced_since: datetime | None = None


class UnreferencedMedia(ContractModel):
    media_id: str
    unreferenced_since: datetime


class UnreferencedMediaPage(ContractModel):
    """`GET /internal/media-unreferenced?before=&limit=` on the Message Service: media whose
    last referencing message was deleted before `before`, oldest first."""

    media: list[UnreferencedMedia]


class MediaInfo(ContractModel):
    """The Media Service's internal view of a media, for the Message Service's send checks.

    `GET /internal/media/{media_id}` on the Media Service (no access check: the caller decides).
    """

    media_id: str
    owner: str
    state: MediaState
    media_type: MediaType
    meta: dict[str, Any] = Field(default_factory=dict)
    # What a `media_update` frame shows, should the Message Service have to announce this state.
    variants: list[Variant] = Field(default_factory=list)


# --- conversations and messages -----------------------------------------------------------

UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\s/#]+$")]
MAX_THUMBNAIL_BYTES = 4096


class ConversationCreate(ContractModel):
    members: Annotated[list[UserId], Field(max_length=1000)]
    title: Annotated[str | None, Field(max_length=200)] = None
    direct: Annotated[
        bool,
        Field(description="a one-to-one conversation: exactly one other member, one per pair"),
    ] = False


class Conversation(ContractModel):
    conversation_id: str
    members: list[str]
    title: str | None = None
    created_at: datetime
    admins: list[str] = Field(default_factory=list)
    direct: bool = False


class ConversationSummary(ContractModel):
    conversation_id: str
    members: list[str]
    title: str | None = None
    created_at: datetime
    admins: list[str] = Field(default_factory=list)
    direct: bool = False
    last_seq: int
    last_message_at: datetime


class ConversationList(ContractModel):
    conversations: list[ConversationSummary]
    next: str | None = Field(description="pass as `before` for the next page; null at the end")


class MemberAdd(ContractModel):
    user_id: UserId


class MediaRef(ContractModel):
    media_id: Annotated[str, Field(min_length=1, max_length=128)]
    thumbnail: Annotated[
        str | None, Field(description="base64, at most 4096 bytes decoded", max_length=8192)
    ] = None


class SendMessage(ContractModel):
    client_msg_id: Annotated[str, Field(min_length=1, max_length=128)]
    text: Annotated[str | None, Field(max_length=8000)] = None
    media: Annotated[list[MediaRef], Field(max_length=10)] = Field(default_factory=list)


class MessageMedia(ContractModel):
    media_id: str
    media_type: MediaType
    state: MediaState
    meta: dict[str, Any] = Field(default_factory=dict)
    thumbnail: str | None = None


class Message(ContractModel):
    message_id: str
    conversation_id: str
    seq: int
    sender: str
    sender_device: str
    client_msg_id: str
    text: str | None = None
    created_at: datetime
    media: list[MessageMedia] = Field(default_factory=list)


class DeletedMessage(ContractModel):
    """A deleted message as history (and pending deliveries) show it: no text, no media."""

    message_id: str
    conversation_id: str
    seq: int
    sender: str
    created_at: datetime
    deleted: Literal[True] = True


class MessagePage(ContractModel):
    messages: list[Message | DeletedMessage]


# --- internal: gateway <-> Message Service --------------------------------------------------


class InternalSend(ContractModel):
    """A send arriving through a gateway: the gateway vouches for the sender's identity."""

    sender: UserId
    sender_device: Annotated[str, Field(min_length=1, max_length=128)]
    conversation_id: Annotated[str, Field(min_length=1, max_length=128)]
    message: SendMessage


MessageIds = Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=500)]


class ReceivedAck(ContractModel):
    message_ids: MessageIds


class Delivery(ContractModel):
    user_id: str
    device_id: str
    frame: dict[str, Any]


class PushRequest(ContractModel):
    """`POST /internal/push` on a gateway: frames for devices that gateway holds."""

    deliveries: list[Delivery]


class PushResult(ContractModel):
    delivered: int
    not_connected: int


# --- a gateway's connect storm: many devices' backlogs in one call (internal) ------------------

# Devices per `POST /internal/devices/pending` on the Message Service.
PENDING_BATCH_DEVICES = 100


class DeviceRef(ContractModel):
    user_id: str = Field(min_length=1, max_length=256)
    device_id: str = Field(min_length=1, max_length=256)


class PendingBatch(ContractModel):
    """`POST /internal/devices/pending`: `GET .../pending` for many devices in one call."""

    devices: list[DeviceRef] = Field(min_length=1, max_length=PENDING_BATCH_DEVICES)


class DevicePending(ContractModel):
    """One device's answer in a batch, in order: 200 with its pending messages, or the status
    and error its own `GET .../pending` would have answered."""

    status: int
    messages: list[dict[str, Any]] = []
    error: ErrorDetail | None = None


class PendingBatchResult(ContractModel):
    results: list[DevicePending]


# --- media lifetime (docs/lifecycle.md) ------------------------------------------------------


class MediaUnreferenced(ContractModel):
    """`POST /internal/media/{media_id}/unreferenced` on the Media Service: the last message
    referencing the media went at `at` (the unsent TTL counts from then)."""

    at: datetime


class LegalHoldRequest(ContractModel):
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


class UserLegalHold(ContractModel):
    user_id: str
    legal_hold: bool
    reason: str
    media_held: int
