"""A token bucket kept in memory: one per connection, so a client cannot flood the Message Service.

Pure: the caller passes the clock, so tests need no sleeping. A per-connection limit lives in
memory (not in DynamoDB like `shared.rate_limits`) because a connection lives on one instance.
"""

from __future__ import annotations

from shared.token_bucket import tokens_at


class TokenBucket:
    """Holds up to `burst` tokens, refilled at `rate_per_second`; each send takes one."""

    __slots__ = ("_tokens", "_updated_at", "burst", "rate_per_second")

    def __init__(self, *, rate_per_second: float, burst: int, now: float) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate_per_second = rate_per_second
        self.burst = burst
        self._tokens = float(burst)  # a new connection may burst at once
        self._updated_at = now

    def tokens(self, now: float) -> float:
        """Tokens available at `now` (a clock going backwards adds nothing)."""
        return tokens_at(
            self._tokens,
            updated_at=self._updated_at,
            now=now,
            capacity=self.burst,
            per_second=self.rate_per_second,
        )

    def try_take(self, now: float) -> bool:
        """Take one token if there is one; False means the caller is over the limit."""
        available = self.tokens(now)
        self._updated_at = max(self._updated_at, now)
        if available < 1.0:
            self._tokens = available
            return False
        self._tokens = available - 1.0
        return True

    def seconds_until_a_token(self, now: float) -> float:
        return max(0.0, (1.0 - self.tokens(now)) / self.rate_per_second)
