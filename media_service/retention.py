"""The lifetime rules as pure functions of (record, now, policy): what is due, and when next.

The sweeper does what `decide` says, then stores `next_due` as the record's `sweep_due`, so each
pass is a query for records due by now, never a scan. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.lifecycle import LifecycleSettings
from shared.media_records import MediaRecord
from shared.media_states import PENDING_CLIENT
from shared.models import MediaState

# Still in the worker's hands: never deleted under it; looked at again later.
IN_FLIGHT = frozenset({MediaState.UPLOADED, MediaState.PROCESSING})
# States whose bytes retention retires (a ready media becomes `expired`; failed and blocked
# ones keep their state, their bytes go all the same).
RETAINED = frozenset({MediaState.READY, MediaState.FAILED, MediaState.BLOCKED})


class Action(StrEnum):
    NONE = "none"
    # A slot or challenge nobody used in time becomes `expired` (upload_expired).
    SETTLE_ABANDONED = "settle_abandoned"
    # Unsent for the TTL (by the record): ask the Message Service, delete if still unreferenced.
    CHECK_UNSENT = "check_unsent"
    # Deleted by its owner while held, and no longer held: delete now.
    DELETE = "delete"
    RETIRE_ORIGINAL = "retire_original"
    RETIRE_DERIVATIVES = "retire_derivatives"
    # Under legal hold: make sure storage holds every object it has (new derivatives too).
    APPLY_HOLD = "apply_hold"


@dataclass(frozen=True, kw_only=True)
class Policy:
    unsent_ttl: timedelta
    retention_original: timedelta
    retention_derivatives: timedelta
    # How long past its expiry an unused slot may still receive its bytes (lookup's grace).
    abandon_grace: timedelta
    # How soon to look again at a media the worker still processes, or a held one settling.
    recheck: timedelta

    @classmethod
    def from_settings(cls, settings: LifecycleSettings, *, abandon_grace_seconds: int) -> Policy:
        return cls(
            unsent_ttl=timedelta(seconds=settings.unsent_media_ttl_seconds),
            retention_original=timedelta(seconds=settings.retention_original_seconds),
            retention_derivatives=timedelta(seconds=settings.retention_derivatives_seconds),
            abandon_grace=timedelta(seconds=abandon_grace_seconds),
            recheck=timedelta(seconds=max(settings.sweep_interval_seconds, 1)),
        )


def abandoned_at(record: MediaRecord, policy: Policy) -> datetime | None:
    """When a pending slot or challenge counts as abandoned (None: not pending)."""
    if record.state is MediaState.AWAITING_UPLOAD and record.upload_expires_at is not None:
        return record.upload_expires_at + policy.abandon_grace
    if record.state is MediaState.AWAITING_PROOF:
        # A proof whose process died after taking the challenge left none: the slot's expiry
        # (set with the challenge) still bounds it.
        expires_at = record.challenge.expires_at if record.challenge else record.upload_expires_at
        return expires_at + policy.abandon_grace if expires_at is not None else None
    return None


def unsent_due(record: MediaRecord, policy: Policy) -> datetime:
    """The unsent TTL counts from creation, or from the last moment a message referenced it."""
    since = max(record.created_at, record.last_referenced_at or record.created_at)
    return since + policy.unsent_ttl


def original_due(record: MediaRecord, policy: Policy) -> datetime:
    return record.created_at + policy.retention_original


def derivatives_due(record: MediaRecord, policy: Policy) -> datetime:
    return record.created_at + policy.retention_derivatives


def settled_for_hold(record: MediaRecord) -> bool:
    """No object of this media can appear any more: a storage hold applied now stays complete."""
    return record.state not in PENDING_CLIENT | IN_FLIGHT


def decide(record: MediaRecord, now: datetime, policy: Policy) -> Action:
    """The one rule due for `record` at `now` (the most destructive first)."""
    if record.held:
        # Settling an abandoned slot destroys nothing (there are no bytes): held or not.
        abandoned = abandoned_at(record, policy)
        if abandoned is not None and now > abandoned:
            return Action.SETTLE_ABANDONED
        return Action.APPLY_HOLD
    if record.owner_deleted_at is not None:
        return Action.DELETE
    if record.state in PENDING_CLIENT:
        abandoned = abandoned_at(record, policy)
        return Action.SETTLE_ABANDONED if abandoned and now > abandoned else Action.NONE
    if record.state in IN_FLIGHT:
        return Action.NONE
    if now >= unsent_due(record, policy):
        return Action.CHECK_UNSENT
    retain_original = record.state in RETAINED and not record.original_retired
    if retain_original and now >= original_due(record, policy):
        return Action.RETIRE_ORIGINAL
    retain_derivatives = record.original_retired and not record.derivatives_retired
    if retain_derivatives and now >= derivatives_due(record, policy):
        return Action.RETIRE_DERIVATIVES
    return Action.NONE


def next_due(record: MediaRecord, now: datetime, policy: Policy) -> datetime | None:
    """When a rule may next apply to `record` as it is (None: none ever will, as it is)."""
    if record.held:
        # Until it settles, its bytes or derivatives may appear: hold them soon after they do.
        return None if settled_for_hold(record) else now + policy.recheck
    if record.owner_deleted_at is not None:
        return now
    if record.state in PENDING_CLIENT:
        # The worker moves it on without rescheduling: look again when it would be an unsent
        # candidate (if that is still ahead), or when it counts as abandoned.
        abandoned = abandoned_at(record, policy)
        pending = [abandoned if abandoned is not None else now + policy.recheck]
        unsent = unsent_due(record, policy)
        return min([*pending, unsent]) if unsent > now else pending[0]
    if record.state in IN_FLIGHT:
        return now + policy.recheck
    candidates = [unsent_due(record, policy)]
    if record.state in RETAINED and not record.original_retired:
        candidates.append(original_due(record, policy))
    elif record.original_retired and not record.derivatives_retired:
        candidates.append(derivatives_due(record, policy))
    return min(candidates)
