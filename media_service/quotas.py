"""Usage as users and admins read it: the counters of `shared.usage` against the quota.

The quota itself is enforced where slots are made (`MediaRecords.create`, one transaction with
the counter item), so concurrent slots of one user can never pass it together.
"""

from __future__ import annotations

from shared.usage import Usage, UsageCounters


class Quotas:
    def __init__(self, counters: UsageCounters, *, quota_bytes: int) -> None:
        self.counters = counters
        self.quota_bytes = quota_bytes

    async def of(self, user_id: str) -> Usage:
        return await self.counters.usage(user_id, self.quota_bytes)
