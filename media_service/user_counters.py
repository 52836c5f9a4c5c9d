"""One DynamoDB item per user that admits upload slots: the slot rate and the pending count.

Why (issue 14, item 2): a slot used to cost five round trips (read and conditionally put a token
bucket, query the pending GSI, look the blob up, put the media row), and one user's concurrent
requests raced on the bucket until some got `429 rate_limited` from contention alone. Now a
single-upload slot for new bytes costs one: a transaction that updates this item (rate and
pending checked by its condition), puts the media row, moves the usage item and carries the
guards of `media_service.slot_guards` (no deduplicable blob, no user hold), which hand back
what they found when they refuse.

The item `user#<owner>` lives in the rate-limits table (key `bucket_key`, no TTL attribute, so
it stays) and holds:

- `slot_tat`: the rate, as GCRA's "theoretical arrival time" (epoch seconds). It is the same
  token bucket as before (`SLOT_RATE_PER_MINUTE` tokens, refilled at that rate per minute, so
  a burst of up to `SLOT_RATE_PER_MINUTE` slots goes through at once: 60 by default, three times
  `MAX_PENDING_UPLOADS`, which is what bounds a phone's 100-photo send) in one number a
  condition can check: a slot is allowed when `slot_tat <= now + (limit - 1) * interval`, and
  moves it to `max(slot_tat, now) + interval`. DynamoDB has no `max`, so the update comes in two
  shapes (the item idle: `slot_tat < now`; or busy); the service guesses from what it last saw
  and, on a wrong guess, learns the stored value from the refusal (ALL_OLD) and retries once.
  Concurrent requests of one user no longer race: each adds an interval server-side.
- `pending`: slots made and not yet known to be finished. It only counts up on the hot path;
  when it reaches `MAX_PENDING_UPLOADS` the service recounts the truth from the pending GSI
  (bounded by the limit: uploads still awaiting bytes whose slot has not expired) and stores
  it. So no other code path (the worker's commit, expiry, deletion) has to keep it exact, and
  the GSI is read once per `MAX_PENDING_UPLOADS - pending` slots instead of on every slot.

Per-user quotas (bytes stored, `GET /v1/me/usage`) live on a usage item beside this one
(`shared.usage`), moved in the same transaction: no extra round trip.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from media_service.slot_guards import Guard
from shared.dynamo import is_transaction_conflict
from shared.errors import RateLimited

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb.client import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import (
        PutTypeDef,
        TransactWriteItemTypeDef,
        UpdateTypeDef,
    )

# Wrong guesses and pending recounts are each resolved in one more attempt; beyond this many
# the user's own requests are racing hard, and the limit is surely near.
MAX_ATTEMPTS = 4
PENDING_RETRY_AFTER_SECONDS = 30
# Owners whose last `slot_tat` this instance remembers (to guess the update's shape).
HINTS_KEPT = 10_000
# First retry of a transaction cancelled by a conflict waits up to this long, doubling.
CONFLICT_BACKOFF_SECONDS = 0.01


def _number(value: float) -> str:
    """A DynamoDB number in plain decimal notation (`repr` may say `6e-05`, which the emulator
    refuses), to the microsecond."""
    return f"{value:.6f}"


@dataclass(frozen=True, kw_only=True)
class SlotLimits:
    per_minute: int  # SLOT_RATE_PER_MINUTE: also the burst capacity
    max_pending: int  # MAX_PENDING_UPLOADS

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute

    @property
    def tolerance(self) -> float:
        return (self.per_minute - 1) * self.interval


@dataclass(frozen=True)
class _Seen:
    """What the item held when a condition refused an attempt."""

    slot_tat: float | None
    pending: int
    # Another transaction held one of the items: nothing was refused, try again.
    conflict: bool = False


CountPending = Callable[[], Awaitable[int]]


class UserCounters:
    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self._db = dynamodb
        self._table = table
        self._hints: OrderedDict[str, float] = OrderedDict()

    async def admit(
        self,
        owner: str,
        *,
        now: datetime,
        limits: SlotLimits,
        count_pending: CountPending,
        create: PutTypeDef | None = None,
        guards: Sequence[Guard] = (),
    ) -> None:
        """Take a slot for `owner` (and put `create`, the media row, in the same transaction,
        with `guards`), or raise `RateLimited` (`rate_limited` or `too_many_pending_uploads`),
        or what the first refusing guard says (the counter's own refusal comes first).

        `count_pending` gives the true pending count; it is called only when the counter says
        the user is at the limit.
        """
        moment = now.timestamp()
        busy = self._hints.get(owner, 0.0) >= moment
        for attempt in range(MAX_ATTEMPTS):
            seen = await self._attempt(
                owner, moment, limits, busy=busy, create=create, guards=guards
            )
            if seen is None:
                return
            if seen.conflict:
                # DynamoDB cancels a transaction that meets another one on the same item (the
                # user's own concurrent slots, or others checking the same blob): jittered retry.
                await asyncio.sleep(random.uniform(0, CONFLICT_BACKOFF_SECONDS * 2**attempt))
                continue
            if seen.slot_tat is not None and seen.slot_tat > moment + limits.tolerance:
                self._remember(owner, seen.slot_tat)
                wait = math.ceil(seen.slot_tat - limits.tolerance - moment)
                raise RateLimited(
                    f"at most {limits.per_minute} upload slots a minute; slow down",
                    retry_after_seconds=wait,
                )
            if seen.pending >= limits.max_pending:
                actual = await count_pending()
                if actual >= limits.max_pending:
                    raise RateLimited(
                        f"at most {limits.max_pending} uploads may be pending at once: finish or "
                        "abandon one first",
                        retry_after_seconds=PENDING_RETRY_AFTER_SECONDS,
                        code="too_many_pending_uploads",
                    )
                await self._correct_pending(owner, seen.pending, actual)
            busy = seen.slot_tat is not None and seen.slot_tat >= moment
        raise RateLimited(
            f"at most {limits.per_minute} upload slots a minute; slow down",
            retry_after_seconds=1,
        )

    def _remember(self, owner: str, slot_tat: float) -> None:
        self._hints[owner] = slot_tat
        self._hints.move_to_end(owner)
        while len(self._hints) > HINTS_KEPT:
            self._hints.popitem(last=False)

    def _update(
        self, owner: str, moment: float, limits: SlotLimits, *, busy: bool
    ) -> UpdateTypeDef:
        values: dict[str, Any] = {
            ":now": {"N": _number(moment)},
            ":one": {"N": "1"},
            ":max_pending": {"N": str(limits.max_pending)},
        }
        pending_ok = "(attribute_not_exists(pending) OR pending < :max_pending)"
        if busy:
            # The bucket is in use: one more interval after what is already taken.
            values[":interval"] = {"N": _number(limits.interval)}
            values[":latest"] = {"N": _number(moment + limits.tolerance)}
            update = "SET slot_tat = slot_tat + :interval ADD pending :one"
            rate_ok = "slot_tat BETWEEN :now AND :latest"
        else:
            # The bucket is full (never used, or idle since `slot_tat`): start from now.
            values[":next"] = {"N": _number(moment + limits.interval)}
            update = "SET slot_tat = :next ADD pending :one"
            rate_ok = "(attribute_not_exists(slot_tat) OR slot_tat < :now)"
        return {
            "TableName": self._table,
            "Key": {"bucket_key": {"S": f"user#{owner}"}},
            "UpdateExpression": update,
            "ConditionExpression": f"{rate_ok} AND {pending_ok}",
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    async def _attempt(
        self,
        owner: str,
        moment: float,
        limits: SlotLimits,
        *,
        busy: bool,
        create: PutTypeDef | None,
        guards: Sequence[Guard] = (),
    ) -> _Seen | None:
        """None when the slot was taken (and the row put); else what the item held."""
        update = self._update(owner, moment, limits, busy=busy)
        try:
            if create is None:
                response = await self._db.update_item(**update, ReturnValues="UPDATED_NEW")
                self._remember(owner, float(response["Attributes"]["slot_tat"]["N"]))
                return None
            items: list[TransactWriteItemTypeDef] = [
                {"Update": update},
                {"Put": create},
                *(guard.item for guard in guards),
            ]
            await self._db.transact_write_items(TransactItems=items)
        except ClientError as error:
            refused = _refused_guard(error, guards, first=2)
            if refused is not None:
                raise refused from error
            if is_transaction_conflict(error):
                return _Seen(slot_tat=None, pending=0, conflict=True)
            return self._refusal(error)
        # A lower bound of the new `slot_tat` (exact when the bucket was idle): a next request
        # within one interval expects the bucket busy.
        self._remember(owner, moment + limits.interval)
        return None

    @staticmethod
    def _refusal(error: ClientError) -> _Seen:
        """What the counter item held, from a refused update or transaction; anything else
        (the row's own condition, throttling) is raised on."""
        response = cast(dict[str, Any], error.response)
        code = response.get("Error", {}).get("Code")
        item: dict[str, Any]
        if code == "ConditionalCheckFailedException":
            item = dict(response.get("Item") or {})
        elif code == "TransactionCanceledException":
            reasons: list[dict[str, Any]] = list(response.get("CancellationReasons") or [])
            if not reasons or reasons[0].get("Code") != "ConditionalCheckFailed":
                raise error
            item = dict(reasons[0].get("Item") or {})
        else:
            raise error
        tat = item.get("slot_tat", {}).get("N")
        pending = item.get("pending", {}).get("N")
        return _Seen(
            slot_tat=float(tat) if tat is not None else None,
            pending=int(pending) if pending is not None else 0,
        )

    async def _correct_pending(self, owner: str, seen: int, actual: int) -> None:
        """Store the recounted pending count, unless another request changed it meanwhile
        (then the next attempt sees the new value and decides again)."""
        try:
            await self._db.update_item(
                TableName=self._table,
                Key={"bucket_key": {"S": f"user#{owner}"}},
                UpdateExpression="SET pending = :actual",
                ConditionExpression="pending = :seen",
                ExpressionAttributeValues={
                    ":actual": {"N": str(actual)},
                    ":seen": {"N": str(seen)},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise


def _refused_guard(error: ClientError, guards: Sequence[Guard], *, first: int) -> Exception | None:
    """What the first refusing guard (items `first`... of a cancelled transaction) says, unless
    the counter item (item 0) refused too: its refusal says more."""
    response = cast(dict[str, Any], error.response)
    if response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return None
    reasons: list[dict[str, Any]] = list(response.get("CancellationReasons") or [])
    if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
        return None
    for guard, reason in zip(guards, reasons[first:], strict=False):
        if reason.get("Code") == "ConditionalCheckFailed":
            return guard.refused(reason.get("Item"))
    return None
