"""Capabilities for Uppy's `@uppy/aws-s3` plugin (pure).

The plugin's Companion mode calls `{companionEndpoint}/s3/...` with `fetch` and no
Authorization header, so the endpoint itself carries the grant: `/v1/uppy/{capability}` where the
capability names its owner and expiry under an HMAC. It is minted with the owner's bearer token
and only lets the plugin do what the owner could do with their own upload slots (docs/uppy.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Capability:
    owner: str
    expires: int


class CapabilitySigner:
    def __init__(self, secret: str) -> None:
        # Domain-separated from every other use of the secret.
        self._key = hashlib.sha256(b"ferry-uppy-capability\x00" + secret.encode()).digest()

    def _mac(self, owner: str, expires: int) -> str:
        message = f"{owner}\x00{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def mint(self, owner: str, expires: int) -> str:
        encoded = base64.urlsafe_b64encode(owner.encode()).decode().rstrip("=")
        return f"{expires}.{encoded}.{self._mac(owner, expires)}"

    def read(self, token: str, *, now: float) -> Capability | None:
        """The capability, or None when forged, malformed or expired."""
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[1]) > 400:
            return None
        expires = int(parts[0])
        try:
            owner = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        expected = self._mac(owner, expires).encode()
        if not hmac.compare_digest(expected, parts[2].encode("utf-8", "replace")):
            return None
        if expires < now:
            return None
        return Capability(owner=owner, expires=expires)
