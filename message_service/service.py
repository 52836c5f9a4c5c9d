"""The Message Service's use cases, independent of HTTP: routes call these and nothing else."""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time

from message_service.conversations import ConversationMissing, ConversationStore
from message_service.deliveries import DeliveryStore, delivery_order
from message_service.ids import is_conversation_id, message_id, new_conversation_id
from message_service.media_client import MediaServiceClient
from message_service.media_refs import MediaRefStore
from message_service.messages import ClaimLost, MessageStore, SendRecord
from message_service.metrics import MessageMetrics
from message_service.pusher import Pusher
from message_service.settings import Settings
from shared.clock import utcnow
from shared.errors import Conflict, NotFound, PayloadTooLarge, Unprocessable
from shared.frames import MediaUpdateFrame, MessageFrame, dump_frame
from shared.media_states import BYTES_VERIFIED, UNUSABLE
from shared.models import (
    MAX_THUMBNAIL_BYTES,
    Conversation,
    ConversationCreate,
    MediaEvent,
    MediaRef,
    MediaState,
    Message,
    MessageMedia,
    SendMessage,
)

log = logging.getLogger("ferry.messages")

# Media states a later event will change: a message sent meanwhile may miss that event.
IN_FLUX = frozenset({MediaState.UPLOADED, MediaState.PROCESSING})


class MessagingService:
    def __init__(
        self,
        *,
        settings: Settings,
        conversations: ConversationStore,
        messages: MessageStore,
        deliveries: DeliveryStore,
        refs: MediaRefStore,
        media: MediaServiceClient,
        pusher: Pusher,
        metrics: MessageMetrics,
    ) -> None:
        self.settings = settings
        self.conversations = conversations
        self.messages = messages
        self.deliveries = deliveries
        self.refs = refs
        self.media = media
        self.pusher = pusher
        self.metrics = metrics

    # --- conversations ---------------------------------------------------------------------

    async def create_conversation(self, caller: str, body: ConversationCreate) -> Conversation:
        members = sorted({caller, *body.members})
        if len(members) > self.settings.max_members:
            raise Unprocessable(
                f"a conversation has at most {self.settings.max_members} members",
                code="too_many_members",
            )
        conversation = Conversation(
            conversation_id=new_conversation_id(),
            members=members,
            title=body.title,
            created_at=utcnow(),
        )
        await self.conversations.create(conversation, created_by=caller)
        return conversation

    async def _membership(self, caller: str, conversation_id: str) -> None:
        """404 alike for a missing conversation and one the caller is not in."""
        if not is_conversation_id(conversation_id) or not await self.conversations.is_member(
            conversation_id, caller
        ):
            raise NotFound("no such conversation")

    async def conversation(self, caller: str, conversation_id: str) -> Conversation:
        await self._membership(caller, conversation_id)
        found = await self.conversations.get(conversation_id)
        if found is None:
            raise NotFound("no such conversation")
        return found

    async def add_member(self, caller: str, conversation_id: str, user_id: str) -> Conversation:
        current = await self.conversation(caller, conversation_id)
        if user_id not in current.members and len(current.members) >= self.settings.max_members:
            raise Unprocessable(
                f"a conversation has at most {self.settings.max_members} members",
                code="too_many_members",
            )
        await self.conversations.add_member(conversation_id, user_id, utcnow())
        return await self.conversation(caller, conversation_id)

    async def remove_member(self, caller: str, conversation_id: str, user_id: str) -> None:
        """Leave (yourself) or remove another member; from now on they read nothing of it."""
        await self._membership(caller, conversation_id)
        if not await self.conversations.is_member(conversation_id, user_id):
            raise NotFound("no such member")
        await self.conversations.remove_member(conversation_id, user_id)

    # --- sending ---------------------------------------------------------------------------

    async def send(
        self, sender: str, device: str, conversation_id: str, body: SendMessage
    ) -> tuple[Message, bool]:
        """(the message, whether it is new). A replay of a `client_msg_id` returns the first."""
        started = time.perf_counter()
        check_message_shape(body)
        await self._membership(sender, conversation_id)
        earlier = await self.messages.lookup(sender, body.client_msg_id)
        if earlier is not None and earlier.conversation_id != conversation_id:
            raise Conflict(
                "this client_msg_id was already used for another conversation",
                code="client_msg_id_reused",
            )
        if earlier is not None and earlier.message_id is not None:
            return await self._replay(earlier, sender, body.client_msg_id), False
        media = [await self._usable_media(sender, ref) for ref in body.media]
        token = secrets.token_hex(8)
        try:
            await self.messages.claim(
                sender,
                body.client_msg_id,
                conversation_id=conversation_id,
                token=token,
                now=time.time(),
                stale_after=self.settings.send_claim_stale_seconds,
            )
        except ClaimLost:
            return await self._settled_replay(sender, body.client_msg_id), False
        try:
            seq = await self.conversations.allocate_seq(conversation_id)
        except ConversationMissing as error:
            raise NotFound("no such conversation") from error
        message = Message(
            message_id=message_id(conversation_id, seq),
            conversation_id=conversation_id,
            seq=seq,
            sender=sender,
            sender_device=device,
            client_msg_id=body.client_msg_id,
            text=body.text,
            created_at=utcnow(),
            media=media,
        )
        try:
            await self.messages.store(message, claim_token=token)
        except ClaimLost:
            # Our claim went stale and another attempt took over and stored it: answer with
            # theirs (this seq stays unused: the one way a gap can appear).
            return await self._settled_replay(sender, body.client_msg_id), False
        await self._fan_out(message)
        self.metrics.sends.labels("ok").inc()
        self.metrics.send_latency.observe(time.perf_counter() - started)
        await self._catch_up(message)
        return message, True

    async def _replay(self, earlier: SendRecord, sender: str, client_msg_id: str) -> Message:
        assert earlier.seq is not None
        found = await self.messages.get_many([(earlier.conversation_id, earlier.seq)])
        if not found:
            raise Conflict("the first send of this message is still being stored; retry")
        message = found[0]
        if not earlier.fanned_out:
            # The first attempt died between storing and delivering: finish its work now.
            await self._fan_out(message)
        self.metrics.sends.labels("replay").inc()
        return message

    async def _settled_replay(self, sender: str, client_msg_id: str) -> Message:
        earlier = await self.messages.lookup(sender, client_msg_id)
        if earlier is None or earlier.message_id is None:
            raise Conflict(
                "this message is being sent by another request; retry shortly",
                code="send_in_progress",
            )
        return await self._replay(earlier, sender, client_msg_id)

    async def _usable_media(self, sender: str, ref: MediaRef) -> MessageMedia:
        info = await self.media.info(ref.media_id)
        if info is None or not (
            info.owner == sender or await self.can_read_media(ref.media_id, sender)
        ):
            raise NotFound(f"no such media: {ref.media_id}")
        if info.state in UNUSABLE:
            raise Conflict(
                f"media {ref.media_id} is {info.state.value} and cannot be sent",
                code="media_unusable",
            )
        if info.state not in BYTES_VERIFIED:
            raise Conflict(
                f"the bytes of media {ref.media_id} have not arrived yet",
                code="media_not_uploaded",
            )
        return MessageMedia(
            media_id=info.media_id,
            media_type=info.media_type,
            state=info.state,
            meta=info.meta,
            thumbnail=ref.thumbnail,
        )

    async def _catch_up(self, message: Message) -> None:
        """Announce media changes that no event could announce for this message.

        A media event handled between reading a media's state (the send's checks) and storing
        the message found no reference to update: its state would never reach this
        conversation. Now that the references exist, each media still in flux is read once
        more, and a change is applied as its event would have been (events are idempotent).
        """
        for item in message.media:
            if item.state not in IN_FLUX:
                continue
            try:
                info = await self.media.info(item.media_id)
                if info is None or info.state == item.state:
                    continue
                log.info(
                    "media changed while its message was stored: %s",
                    info.state.value,
                    extra={"media_id": info.media_id, "state": info.state.value},
                )
                await self.on_media_event(
                    MediaEvent(
                        media_id=info.media_id,
                        state=info.state,
                        media_type=info.media_type,
                        meta=info.meta,
                        variants=info.variants,
                        occurred_at=utcnow(),
                    )
                )
            except Exception:
                # The message is stored and delivered; its media's document has the state.
                log.warning(
                    "could not catch up on a media's state",
                    exc_info=True,
                    extra={"media_id": item.media_id},
                )

    async def _fan_out(self, message: Message) -> None:
        """Persist a pending delivery for every device of every member, then push."""
        members = await self.conversations.members(message.conversation_id)
        sending_device = (message.sender, message.sender_device)
        devices = [d for d in await self.deliveries.devices_of(members) if d != sending_device]
        await self.deliveries.add(devices, message)
        await self.messages.mark_fanned_out(message.sender, message.client_msg_id)
        frame = dump_frame(MessageFrame(message=message))
        self.pusher.push_soon(members, frame, skip=sending_device)

    # --- reading ---------------------------------------------------------------------------

    async def history(
        self, caller: str, conversation_id: str, *, after: int, limit: int
    ) -> list[Message]:
        await self._membership(caller, conversation_id)
        page = await self.messages.page(
            conversation_id, after=after, limit=min(limit, self.settings.history_page_limit)
        )
        return await self._with_current_media(page)

    async def _with_current_media(self, messages: list[Message]) -> list[Message]:
        """Messages with each media's latest known state (events keep the references current)."""
        pairs = [
            (m.media_id, message.conversation_id) for message in messages for m in message.media
        ]
        if not pairs:
            return messages
        latest = await self.refs.latest(pairs)
        refreshed = []
        for message in messages:
            media = []
            for item in message.media:
                state, meta = latest.get((item.media_id, message.conversation_id), (None, None))
                if state is not None:
                    item = item.model_copy(update={"state": MediaState(state), "meta": meta})
                media.append(item)
            refreshed.append(message.model_copy(update={"media": media}))
        return refreshed

    # --- devices (through the gateway) -----------------------------------------------------

    async def pending_for(self, user_id: str, device_id: str) -> list[Message]:
        """What a connecting device has not acknowledged yet, in delivery order.

        Asking makes the device known, so every later message is kept for it too.
        """
        await self.deliveries.touch_device(user_id, device_id, utcnow())
        pending = await self.deliveries.pending(user_id, device_id)
        if not pending:
            return []
        conversations = {p.conversation_id for p in pending}
        still_in = {
            c for c, _ in await self.conversations.memberships((c, user_id) for c in conversations)
        }
        left = [p for p in pending if p.conversation_id not in still_in]
        if left:
            # A member who left reads nothing more of that conversation: drop those for good.
            await self.deliveries.clear(
                user_id, device_id, [message_id(p.conversation_id, p.seq) for p in left]
            )
        messages = await self.messages.get_many(
            [(p.conversation_id, p.seq) for p in pending if p.conversation_id in still_in]
        )
        return delivery_order(await self._with_current_media(messages))

    async def acknowledge(self, user_id: str, device_id: str, message_ids: list[str]) -> None:
        await self.deliveries.clear(user_id, device_id, message_ids)

    # --- media access and events -----------------------------------------------------------

    async def can_read_media(self, media_id: str, user_id: str) -> bool:
        """Whether some conversation `user_id` is in holds a message referencing the media."""
        conversations = await self.refs.conversations_of(media_id)
        if not conversations:
            return False
        return bool(await self.conversations.memberships((c, user_id) for c in conversations))

    async def on_media_event(self, event: MediaEvent) -> int:
        """Record the media's new state on its references and tell online members."""
        frame = dump_frame(
            MediaUpdateFrame(
                media_id=event.media_id,
                state=event.state,
                meta=event.meta,
                variants=event.variants,
            )
        )
        delivered = 0
        for conversation_id in await self.refs.conversations_of(event.media_id):
            if not await self.refs.record_event(event, conversation_id):
                continue  # older than what members already know: telling them would mislead
            members = await self.conversations.members(conversation_id)
            delivered += await self.pusher.push(members, frame)
        return delivered


def check_message_shape(body: SendMessage) -> None:
    if not (body.text and body.text.strip()) and not body.media:
        raise Unprocessable("a message needs text or media", code="empty_message")
    if len({ref.media_id for ref in body.media}) != len(body.media):
        raise Unprocessable("each media may appear once in a message", code="duplicate_media")
    for ref in body.media:
        if ref.thumbnail is None:
            continue
        try:
            decoded = base64.b64decode(ref.thumbnail, validate=True)
        except (binascii.Error, ValueError) as error:
            raise Unprocessable("a thumbnail must be base64", code="invalid_thumbnail") from error
        if len(decoded) > MAX_THUMBNAIL_BYTES:
            raise PayloadTooLarge(
                f"an inline thumbnail is at most {MAX_THUMBNAIL_BYTES} bytes decoded "
                f"(this one is {len(decoded)})",
                code="thumbnail_too_large",
            )
