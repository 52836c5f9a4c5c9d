"""The Message Service's use cases, independent of HTTP: routes call these and nothing else."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import random
import time
import weakref
from datetime import timedelta

from message_service.conversations import (
    BadCursor,
    ConversationExists,
    ConversationStore,
    conversation_of,
)
from message_service.deliveries import DeliveryStore, delivery_order
from message_service.devices import DeviceStore, UnknownDevice
from message_service.ids import (
    is_conversation_id,
    message_id,
    new_conversation_id,
    parse_message_id,
)
from message_service.media_client import MediaServiceClient
from message_service.media_refs import MediaRefStore
from message_service.messages import (
    AlreadySent,
    Contended,
    MessageStore,
    SendRecord,
    SeqTaken,
    StoredMessage,
)
from message_service.metrics import MessageMetrics
from message_service.pusher import Pusher
from message_service.settings import Settings
from shared.admitted import AdmittedCache
from shared.clock import utcnow
from shared.dynamo import is_conditional_failure, is_transaction_conflict
from shared.errors import (
    Conflict,
    DependencyUnavailable,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unprocessable,
)
from shared.frames import MediaUpdateFrame, MessageDeletedFrame, MessageFrame, dump_frame
from shared.media_states import BYTES_VERIFIED, UNUSABLE
from shared.models import (
    MAX_THUMBNAIL_BYTES,
    Conversation,
    ConversationCreate,
    ConversationList,
    ConversationSummary,
    DeletedMessage,
    MediaEvent,
    MediaRef,
    MediaState,
    Message,
    MessageMedia,
    SendMessage,
)
from shared.rate_limits import RateLimitContention, RateLimiter

log = logging.getLogger("ferry.messages")

# Media states a later event will change: a message sent meanwhile may miss that event.
IN_FLUX = frozenset({MediaState.UPLOADED, MediaState.PROCESSING})
# A send re-reads the counter and tries again when another send took its seq; under heavy
# contention in one conversation this bounds the work of one request.
SEND_ATTEMPTS = 60
DELETE_ATTEMPTS = 10
REPAIR_BATCH = 100


def direct_conversation_id(one: str, other: str) -> str:
    """The id of the direct conversation of a pair, the same whoever asks (pure): creating it
    is a conditional put on this id, so a pair never gets two."""
    pair = "\x1f".join(sorted((one, other)))
    return "c_d" + hashlib.sha256(pair.encode()).hexdigest()[:40]


async def _jitter(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, 0.004) * min(attempt, 8))


class MessagingService:
    def __init__(
        self,
        *,
        settings: Settings,
        conversations: ConversationStore,
        messages: MessageStore,
        deliveries: DeliveryStore,
        devices: DeviceStore,
        refs: MediaRefStore,
        media: MediaServiceClient,
        pusher: Pusher,
        metrics: MessageMetrics,
        limiter: RateLimiter,
    ) -> None:
        self.settings = settings
        self.conversations = conversations
        self.messages = messages
        self.deliveries = deliveries
        self.devices = devices
        self.refs = refs
        self.media = media
        self.pusher = pusher
        self.metrics = metrics
        self.limiter = limiter
        self._admitted = AdmittedCache(ttl_seconds=settings.device_cache_seconds)
        # Locks live while a request holds or waits for them (weak values: no growth).
        self._bucket_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # --- limits ----------------------------------------------------------------------------

    async def _take(self, subject: str, *, limit: int, window_seconds: int, what: str) -> None:
        # One request per bucket at a time in this instance: optimistic writes then only
        # race other instances, never a user's own burst of concurrent requests here.
        lock = self._bucket_locks.get(subject)
        if lock is None:
            lock = self._bucket_locks[subject] = asyncio.Lock()
        try:
            async with lock:
                wait = await self.limiter.try_acquire(
                    subject, limit=limit, window_seconds=window_seconds, now=utcnow()
                )
        except RateLimitContention:
            wait = 1
        if wait is not None:
            raise RateLimited(f"too many {what}; retry in {wait}s", retry_after_seconds=wait)

    async def admit_device(self, user_id: str, device_id: str) -> None:
        """403 `too_many_devices` for a device beyond `MAX_DEVICES_PER_USER`."""
        key = (user_id, device_id)
        if self._admitted.hit(key):
            return
        limit = self.settings.max_devices_per_user
        if not await self.devices.admit(user_id, device_id, now=utcnow(), limit=limit):
            raise _too_many_devices(limit)
        self._admitted.add(key)

    async def _admit_connecting(self, user_id: str, device_id: str) -> None:
        """`admit_device` and note the connection, in as few writes as a connect storm allows:
        a known device is one conditional update (its `last_seen`); a new one is that update
        (refused: no row) and the admission, which writes `last_seen` itself."""
        now = utcnow()
        if await self.devices.touch(user_id, device_id, now):
            self._admitted.add((user_id, device_id))
            return
        limit = self.settings.max_devices_per_user
        if not await self.devices.admit(user_id, device_id, now=now, limit=limit, unknown=True):
            raise _too_many_devices(limit)
        self._admitted.add((user_id, device_id))

    async def remove_device(self, user_id: str, device_id: str) -> None:
        try:
            await self.devices.remove(user_id, device_id)
        except UnknownDevice as error:
            raise NotFound("no such device") from error
        self._admitted.forget((user_id, device_id))

    # --- conversations ---------------------------------------------------------------------

    async def create_conversation(
        self, caller: str, body: ConversationCreate
    ) -> tuple[Conversation, bool]:
        """(the conversation, whether it is new): a direct one may exist already."""
        await self._take(
            f"conversations\x1f{caller}",
            limit=self.settings.conversation_rate_per_minute,
            window_seconds=60,
            what="new conversations",
        )
        if body.direct:
            return await self._direct(caller, body)
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
            admins=[caller],
        )
        await self.conversations.create(conversation, created_by=caller)
        return conversation, True

    async def _direct(self, caller: str, body: ConversationCreate) -> tuple[Conversation, bool]:
        others = sorted(set(body.members) - {caller})
        if len(others) != 1:
            raise Unprocessable(
                "a direct conversation has exactly one other member",
                code="direct_needs_one_member",
            )
        conversation = Conversation(
            conversation_id=direct_conversation_id(caller, others[0]),
            members=sorted({caller, others[0]}),
            title=body.title,
            created_at=utcnow(),
            admins=[caller],
            direct=True,
        )
        try:
            await self.conversations.create(conversation, created_by=caller)
        except ConversationExists:
            # Found again. Whoever left it comes back by asking again (their own chat).
            await self.conversations.add_member(conversation.conversation_id, caller, utcnow())
            return await self.conversation(caller, conversation.conversation_id), False
        return conversation, True

    async def list_conversations(
        self, caller: str, *, limit: int, before: str | None
    ) -> ConversationList:
        try:
            activity, cursor = await self.conversations.recent(
                caller, limit=min(limit, self.settings.conversation_page_limit), before=before
            )
        except BadCursor as error:
            raise Unprocessable(
                "`before` must be a `next` cursor from this listing", code="invalid_cursor"
            ) from error
        ids = [a.conversation_id for a in activity]
        rows = await self.conversations.rows(ids)
        members = await asyncio.gather(*(self.conversations.members(c) for c in ids))
        found = []
        for item, its_members in zip(activity, members, strict=True):
            row = rows.get(item.conversation_id)
            if row is None:
                continue
            base = conversation_of(row, its_members)
            found.append(
                ConversationSummary(
                    **base.model_dump(),
                    # The conversation row is the authority; the index row only orders.
                    last_seq=int(row.get("last_seq", item.last_seq)),
                    last_message_at=row.get("last_message_at", item.last_message_at),
                )
            )
        return ConversationList(conversations=found, next=cursor)

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
        """Admins add members (a member who is not one gets 403); nobody joins a direct one."""
        current = await self.conversation(caller, conversation_id)
        if user_id in current.members:
            return current
        if current.direct:
            raise Conflict(
                "a direct conversation has two members; create a group instead",
                code="direct_conversation",
            )
        if caller not in current.admins:
            raise Forbidden("only an admin of this conversation may add members")
        if len(current.members) >= self.settings.max_members:
            raise Unprocessable(
                f"a conversation has at most {self.settings.max_members} members",
                code="too_many_members",
            )
        await self.conversations.add_member(conversation_id, user_id, utcnow())
        return await self.conversation(caller, conversation_id)

    async def remove_member(self, caller: str, conversation_id: str, user_id: str) -> None:
        """Leave (anyone) or remove another member (admins only); from now on they read
        nothing of it. The last admin leaving hands the role to the longest-standing member."""
        current = await self.conversation(caller, conversation_id)
        if user_id != caller and caller not in current.admins:
            raise Forbidden("only an admin of this conversation may remove someone else")
        if user_id not in current.members:
            raise NotFound("no such member")
        await self.conversations.remove_member(conversation_id, user_id)
        if user_id in current.admins:
            await self._keep_an_admin(conversation_id, current.admins, leaving=user_id)

    async def _keep_an_admin(self, conversation_id: str, admins: list[str], leaving: str) -> None:
        rows = await self.conversations.member_rows(conversation_id)
        staying = {row["user_id"]: row.get("joined_at", "") for row in rows}
        kept = [a for a in admins if a != leaving and a in staying]
        if not kept and staying:
            kept = [min(staying, key=lambda user: (staying[user], user))]
        await self.conversations.set_admins(conversation_id, kept)

    # --- sending ---------------------------------------------------------------------------

    async def send(
        self,
        sender: str,
        device: str,
        conversation_id: str,
        body: SendMessage,
        *,
        rate_limited: bool = False,
    ) -> tuple[StoredMessage, bool]:
        """(the message, whether it is new). A replay of a `client_msg_id` returns the first.

        No claim, no lock: the seq, the message, the idempotency outcome and the media
        references commit in one transaction (`MessageStore.store`). Two attempts of one send
        race to put the same idempotency row; the loser answers with the winner's message.
        """
        started = time.perf_counter()
        check_message_shape(body)
        await self._membership(sender, conversation_id)
        earlier = await self.messages.lookup(sender, body.client_msg_id)
        if earlier is not None:
            return await self._replay(earlier, conversation_id), False
        if rate_limited:  # replays above store nothing, so they never count
            burst = self.settings.send_burst
            await self._take(
                f"sends\x1f{sender}",
                limit=burst,
                window_seconds=max(1, round(burst / self.settings.send_rate_per_second)),
                what="sends",
            )
        media = [await self._usable_media(sender, ref) for ref in body.media]
        for attempt in range(SEND_ATTEMPTS):
            last = await self.messages.last_seq(conversation_id)
            if last is None:
                raise NotFound("no such conversation")
            message = Message(
                message_id=message_id(conversation_id, last + 1),
                conversation_id=conversation_id,
                seq=last + 1,
                sender=sender,
                sender_device=device,
                client_msg_id=body.client_msg_id,
                text=body.text,
                created_at=utcnow(),
                media=media,
            )
            try:
                await self.messages.store(message, expected_last_seq=last)
            except (SeqTaken, Contended):
                await _jitter(attempt)
                continue
            except AlreadySent:
                settled = await self.messages.lookup(sender, body.client_msg_id)
                if settled is None:  # cannot happen: the row that refused us exists
                    raise
                return await self._replay(settled, conversation_id), False
            break
        else:
            raise DependencyUnavailable("the conversation is too busy right now; retry")
        await self._fan_out(message)
        self.metrics.sends.labels("ok").inc()
        self.metrics.send_latency.observe(time.perf_counter() - started)
        await self._catch_up(message)
        return message, True

    async def _replay(self, earlier: SendRecord, conversation_id: str) -> StoredMessage:
        if earlier.conversation_id != conversation_id:
            raise Conflict(
                "this client_msg_id was already used for another conversation",
                code="client_msg_id_reused",
            )
        message = await self.messages.get(earlier.conversation_id, earlier.seq)
        if message is None:  # the transaction wrote both rows; a row went missing by hand
            raise Conflict("the first send of this message cannot be found")
        if not earlier.fanned_out:
            # The first attempt died between storing and delivering: finish its work now.
            await self._deliver(message)
        self.metrics.sends.labels("replay").inc()
        return message

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

    async def _deliver(self, message: StoredMessage) -> None:
        """Fan out whatever the message is now: itself, or its tombstone once deleted."""
        if isinstance(message, DeletedMessage):
            await self._fan_out_deletion(message)
        else:
            await self._fan_out(message)

    async def _fan_out(self, message: Message) -> None:
        """Persist a pending delivery for every device of every member, then push.

        Safe to repeat (pending rows are keyed by message; activity only moves forward), which
        is what a retry or the repair loop does after a crash in here.
        """
        members = await self.conversations.members(message.conversation_id)
        sending_device = (message.sender, message.sender_device)
        devices = [d for d in await self.deliveries.devices_of(members) if d != sending_device]
        await self.deliveries.add(devices, message)
        await self.conversations.touch_activity(
            message.conversation_id, members, seq=message.seq, at=message.created_at
        )
        await self.messages.mark_fanned_out(message.sender, message.client_msg_id)
        frame = dump_frame(MessageFrame(message=message))
        self.pusher.push_soon(members, frame, skip=sending_device)

    async def _fan_out_deletion(self, tombstone: DeletedMessage) -> None:
        """A tombstone pending for every member's every device, then `message_deleted` pushes.

        A device that has not acknowledged the message yet gets the tombstone in its place.
        """
        members = await self.conversations.members(tombstone.conversation_id)
        await self.deliveries.add(await self.deliveries.devices_of(members), tombstone)
        client_msg_id, released = await self.messages.tombstone_details(tombstone)
        told = [await self._tell_if_unreferenced(media_id) for media_id in released]
        if client_msg_id is not None and all(told):
            # Left marked otherwise: the repair loop tells the Media Service again later.
            await self.messages.mark_fanned_out(tombstone.sender, client_msg_id)
        frame = dump_frame(
            MessageDeletedFrame(
                conversation_id=tombstone.conversation_id,
                message_id=tombstone.message_id,
                seq=tombstone.seq,
            )
        )
        self.pusher.push_soon(members, frame)

    async def _tell_if_unreferenced(self, media_id: str) -> bool:
        """Tell the Media Service when a media's last reference went (its unsent-media TTL
        counts from then); True once told or nothing to tell."""
        summary = await self.refs.summary(media_id)
        if summary is None or summary.references or summary.unreferenced_since is None:
            return True
        return await self.media.unreferenced(media_id, summary.unreferenced_since)

    async def repair_fan_out(self) -> int:
        """Fan out sends (and deletions) stored before a crash and never fanned out; returns
        how many. Run at start and every `FANOUT_REPAIR_INTERVAL_SECONDS`."""
        grace = timedelta(seconds=self.settings.fanout_repair_grace_seconds)
        keys = await self.messages.unfanned_sends(
            stored_before=utcnow() - grace, limit=REPAIR_BATCH
        )
        for message in await self.messages.get_many(keys):
            await self._deliver(message)
        if keys:
            log.info("fanned out %d sends a crash had left undelivered", len(keys))
        return len(keys)

    async def run_repairs(self) -> None:
        """The repair loop: forever, until cancelled; one failed pass is logged, not fatal."""
        while True:
            try:
                while await self.repair_fan_out() == REPAIR_BATCH:
                    pass
            except Exception:
                log.warning("the fan-out repair pass failed; next pass soon", exc_info=True)
            await asyncio.sleep(self.settings.fanout_repair_interval_seconds)

    # --- deleting --------------------------------------------------------------------------

    async def delete_message(self, caller: str, conversation_id: str, message_id: str) -> None:
        """The sender or an admin deletes a message for everyone (404 for anyone else): the
        tombstone, the released media references and the repair mark in one transaction."""
        await self._membership(caller, conversation_id)
        parsed = parse_message_id(message_id)
        if parsed is None or parsed[0] != conversation_id:
            raise NotFound("no such message")
        for _ in range(DELETE_ATTEMPTS):
            stored = await self.messages.get(conversation_id, parsed[1])
            if stored is None:
                raise NotFound("no such message")
            if stored.sender != caller:
                current = await self.conversations.get(conversation_id)
                if current is None or caller not in current.admins:
                    raise NotFound("no such message")
            if isinstance(stored, DeletedMessage):
                return  # deleted already: the same outcome
            now = utcnow()
            items = [
                self.messages.tombstone(stored, now=now),
                self.messages.mark_unfanned(stored, now=now),
                *await self.refs.on_delete(stored, now=now),
            ]
            try:
                await self.messages.write(items)
            except Exception as error:
                if is_conditional_failure(error) or is_transaction_conflict(error):
                    continue  # a send or deletion moved a count meanwhile: read again
                raise
            break
        else:
            raise DependencyUnavailable("the message is busy right now; retry")
        tombstone = DeletedMessage(
            message_id=stored.message_id,
            conversation_id=stored.conversation_id,
            seq=stored.seq,
            sender=stored.sender,
            created_at=stored.created_at,
        )
        await self._fan_out_deletion(tombstone)
        self.metrics.deletions.inc()

    # --- reading ---------------------------------------------------------------------------

    async def history(
        self, caller: str, conversation_id: str, *, after: int, limit: int
    ) -> list[StoredMessage]:
        await self._membership(caller, conversation_id)
        page = await self.messages.page(
            conversation_id, after=after, limit=min(limit, self.settings.history_page_limit)
        )
        return await self._with_current_media(page)

    async def _with_current_media(self, messages: list[StoredMessage]) -> list[StoredMessage]:
        """Messages with each media's latest known state (events keep the references current)."""
        pairs = [
            (m.media_id, message.conversation_id)
            for message in messages
            if isinstance(message, Message)
            for m in message.media
        ]
        if not pairs:
            return messages
        latest = await self.refs.latest(pairs)
        refreshed: list[StoredMessage] = []
        for message in messages:
            if isinstance(message, DeletedMessage):
                refreshed.append(message)
                continue
            media = []
            for item in message.media:
                state, meta = latest.get((item.media_id, message.conversation_id), (None, None))
                if state is not None:
                    item = item.model_copy(update={"state": MediaState(state), "meta": meta})
                media.append(item)
            refreshed.append(message.model_copy(update={"media": media}))
        return refreshed

    # --- devices (through the gateway) -----------------------------------------------------

    async def pending_for(self, user_id: str, device_id: str) -> list[StoredMessage]:
        """What a connecting device has not acknowledged yet, in delivery order (tombstones
        for messages deleted meanwhile).

        Asking admits the device (403 beyond the limit), so every later message is kept for it.
        """
        await self._admit_connecting(user_id, device_id)
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


def _too_many_devices(limit: int) -> Forbidden:
    return Forbidden(
        f"this account already uses {limit} devices; remove one with "
        "DELETE /v1/me/devices/{device_id}",
        code="too_many_devices",
    )
