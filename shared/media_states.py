"""The media state machine: which transitions exist and what each state allows.

Every write of a media state goes through a conditional update whose condition is built from
`TRANSITIONS`, so a repeated or late event can never move a media backwards.
"""

from __future__ import annotations

from shared.models import MediaState

S = MediaState

TRANSITIONS: dict[MediaState, frozenset[MediaState]] = {
    S.AWAITING_UPLOAD: frozenset({S.UPLOADED, S.FAILED, S.EXPIRED}),
    # A deduplicated media skips the upload and takes the stored blob's outcome.
    S.AWAITING_PROOF: frozenset({S.READY, S.BLOCKED, S.UPLOADED, S.FAILED, S.EXPIRED}),
    S.UPLOADED: frozenset({S.PROCESSING, S.READY, S.FAILED, S.BLOCKED}),
    S.PROCESSING: frozenset({S.READY, S.FAILED, S.BLOCKED}),
    S.READY: frozenset({S.EXPIRED, S.BLOCKED}),
    S.FAILED: frozenset(),
    S.BLOCKED: frozenset(),
    S.EXPIRED: frozenset(),
}

# States whose bytes have been verified and may be served (subject to variant existence).
BYTES_VERIFIED: frozenset[MediaState] = frozenset({S.UPLOADED, S.PROCESSING, S.READY})
# States that can never become usable again.
UNUSABLE: frozenset[MediaState] = frozenset({S.FAILED, S.BLOCKED, S.EXPIRED})
# States still waiting for the client.
PENDING_CLIENT: frozenset[MediaState] = frozenset({S.AWAITING_UPLOAD, S.AWAITING_PROOF})


def sources_of(target: MediaState) -> frozenset[MediaState]:
    """Every state from which `target` may be reached in one step."""
    return frozenset(state for state, targets in TRANSITIONS.items() if target in targets)


def can_transition(current: MediaState, target: MediaState) -> bool:
    return target in TRANSITIONS[current]


def is_terminal(state: MediaState) -> bool:
    return not TRANSITIONS[state]
