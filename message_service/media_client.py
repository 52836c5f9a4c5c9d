"""The Media Service, asked over its internal API (the one authority on media)."""

from __future__ import annotations

import logging
from urllib.parse import quote

import httpx

from shared.auth import INTERNAL_TOKEN_HEADER
from shared.errors import DependencyUnavailable
from shared.logging import REQUEST_ID_HEADER, request_id_var
from shared.models import MediaInfo

log = logging.getLogger("ferry.messages.media")


class MediaServiceClient:
    def __init__(self, client: httpx.AsyncClient, internal_token: str) -> None:
        self._client = client
        self._token = internal_token

    async def info(self, media_id: str) -> MediaInfo | None:
        """The media's owner and state; None when there is no such media."""
        headers = {INTERNAL_TOKEN_HEADER: self._token}
        request_id = request_id_var.get()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        try:
            response = await self._client.get(
                f"/internal/media/{quote(media_id, safe='')}", headers=headers
            )
        except httpx.HTTPError as error:
            log.warning("media service unreachable: %s", error)
            raise DependencyUnavailable("the media service did not answer; retry") from error
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DependencyUnavailable(f"the media service answered {response.status_code}; retry")
        return MediaInfo.model_validate_json(response.content)
