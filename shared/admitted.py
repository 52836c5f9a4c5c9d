"""A small in-memory cache of devices admitted under `MAX_DEVICES_PER_USER`.

The Message Service owns the device count; every service that serves a token asks it whether
the token's device may be used, and remembers a yes for a while so most requests cost nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class AdmittedCache:
    """(user, device) pairs admitted lately, so most requests cost no read (bounded, expiring).

    Only admissions are remembered: a refusal is asked again, so a freed place is seen at once.
    """

    def __init__(self, *, ttl_seconds: float, size: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._size = size
        self._entries: OrderedDict[tuple[str, str], float] = OrderedDict()

    def hit(self, key: tuple[str, str]) -> bool:
        expires = self._entries.get(key)
        if expires is None or expires < time.monotonic():
            self._entries.pop(key, None)
            return False
        return True

    def add(self, key: tuple[str, str]) -> None:
        self._entries[key] = time.monotonic() + self._ttl
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, key: tuple[str, str]) -> None:
        self._entries.pop(key, None)
