"""The token-bucket formula, pure: both rate limits (`shared.rate_limits` in DynamoDB, the
gateway's per connection in memory) refill by it."""

from __future__ import annotations


def tokens_at(
    tokens: float, *, updated_at: float, now: float, capacity: float, per_second: float
) -> float:
    """Tokens a bucket holding `tokens` at `updated_at` has at `now`, refilled at `per_second`
    up to `capacity` (a clock going backwards adds nothing)."""
    elapsed = max(0.0, now - updated_at)
    return min(float(capacity), tokens + elapsed * per_second)
