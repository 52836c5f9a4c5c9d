"""Who may read a media: its owner, and members of a conversation whose messages reference it.

The Media Service is the authority on media, the Message Service on membership, so a non-owner
read is one internal question to the Message Service. Until it is configured, only owners read.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx

from shared.admitted import AdmittedCache
from shared.auth import Identity
from shared.errors import DependencyUnavailable, Forbidden
from shared.internal_client import internal_client
from shared.media_records import MediaRecord
from shared.models import MediaReadAccess, MediaReferences

if TYPE_CHECKING:
    from media_service.settings import Settings

log = logging.getLogger("ferry.media.access")


class ConversationReaders:
    """Asks the Message Service whether a user reads a media through some conversation."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        # From `shared.internal_client`: it adds the internal token and the request id.
        self._client = client

    async def can_read(self, media_id: str, user_id: str) -> bool:
        path = f"/internal/media/{quote(media_id, safe='')}/readers/{quote(user_id, safe='')}"
        return MediaReadAccess.model_validate_json(await self._ask(path)).readable

    async def is_referenced(self, media_id: str) -> bool:
        path = f"/internal/media/{quote(media_id, safe='')}/references"
        return MediaReferences.model_validate_json(await self._ask(path)).referenced

    async def _ask(self, path: str) -> bytes:
        try:
            response = await self._client.get(path)
        except httpx.HTTPError as error:
            log.warning("message service unreachable for an access check: %s", error)
            raise DependencyUnavailable("the access check could not be made; retry") from error
        if response.status_code != 200:
            raise DependencyUnavailable(
                f"the access check failed (message service answered {response.status_code})"
            )
        return response.content


class DeviceGate:
    """Asks the Message Service (which counts devices) whether a token's device may be used:
    403 `too_many_devices` past `MAX_DEVICES_PER_USER`. A yes is remembered for a while; when
    the Message Service cannot answer, the request goes ahead (logged): media work does not
    stop for it, and its own WebSocket and HTTP paths enforce the limit."""

    def __init__(self, client: httpx.AsyncClient, *, cache_seconds: float = 30.0) -> None:
        self._client = client
        self._admitted = AdmittedCache(ttl_seconds=cache_seconds)

    async def __call__(self, identity: Identity) -> None:
        key = (identity.user_id, identity.device_id)
        if self._admitted.hit(key):
            return
        path = f"/internal/devices/{quote(key[0], safe='')}/{quote(key[1], safe='')}/admit"
        try:
            response = await self._client.post(path)
        except httpx.HTTPError as error:
            log.warning("device admission unavailable: %s", error)
            return
        if response.status_code == 204:
            self._admitted.add(key)
        elif response.status_code == 403:
            raise Forbidden(
                "this account already uses its maximum number of devices; remove one with "
                "DELETE /v1/me/devices/{device_id} on the Message Service",
                code="too_many_devices",
            )
        else:
            log.warning("device admission answered %s", response.status_code)


class AccessPolicy:
    def __init__(self, readers: ConversationReaders | None) -> None:
        self._readers = readers

    async def can_read(self, user_id: str, record: MediaRecord) -> bool:
        if record.owner == user_id:
            return True
        if self._readers is None:
            return False
        return await self._readers.can_read(record.media_id, user_id)

    async def ask_as_for_hidden(self, user_id: str, media_id: str) -> None:
        """For a media that does not exist: the same question a hidden media costs (the answer
        is known and ignored), so that missing and hidden ids take the same time to refuse."""
        if self._readers is not None:
            await self._readers.can_read(media_id, user_id)

    async def is_referenced(self, media_id: str) -> bool:
        """Whether any message references the media (never, without a Message Service)."""
        return self._readers is not None and await self._readers.is_referenced(media_id)


async def open_message_service_client(
    stack: AsyncExitStack, settings: Settings
) -> httpx.AsyncClient | None:
    """The internal client to the Message Service (closed with `stack`); None when unset."""
    if not settings.message_service_url:
        return None
    return await stack.enter_async_context(
        internal_client(
            settings.internal_token,
            base_url=settings.message_service_url,
            timeout=settings.internal_call_timeout_seconds,
        )
    )
