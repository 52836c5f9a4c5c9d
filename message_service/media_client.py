"""The Media Service, asked over its internal API (the one authority on media)."""

from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import quote

import httpx

from shared.clock import iso
from shared.errors import DependencyUnavailable
from shared.models import MediaInfo

log = logging.getLogger("ferry.messages.media")


class MediaServiceClient:
    def __init__(self, client: httpx.AsyncClient) -> None:
        # From `shared.internal_client`: it adds the internal token and the request id.
        self._client = client

    async def info(self, media_id: str) -> MediaInfo | None:
        """The media's owner and state; None when there is no such media."""
        try:
            response = await self._client.get(f"/internal/media/{quote(media_id, safe='')}")
        except httpx.HTTPError as error:
            log.warning("media service unreachable: %s", error)
            raise DependencyUnavailable("the media service did not answer; retry") from error
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DependencyUnavailable(f"the media service answered {response.status_code}; retry")
        return MediaInfo.model_validate_json(response.content)

    async def unreferenced(self, media_id: str, since: datetime) -> bool:
        """Tell the Media Service that no message references the media since `since`
        (`POST /internal/media/{id}/unreferenced`); True once it heard (204), or when it has no
        such media or no such endpoint (404: nothing to do); False to try again later."""
        try:
            response = await self._client.post(
                f"/internal/media/{quote(media_id, safe='')}/unreferenced",
                json={"at": iso(since)},
            )
        except httpx.HTTPError as error:
            log.warning("media service unreachable to report an unreferenced media: %s", error)
            return False
        if response.status_code in (200, 204, 404):
            return True
        log.warning("reporting an unreferenced media: answered %s", response.status_code)
        return False
