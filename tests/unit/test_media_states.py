from shared.media_states import can_transition, is_terminal, sources_of
from shared.models import MediaState as S


def test_happy_path_moves_forward() -> None:
    assert can_transition(S.AWAITING_UPLOAD, S.UPLOADED)
    assert can_transition(S.UPLOADED, S.PROCESSING)
    assert can_transition(S.PROCESSING, S.READY)
    assert can_transition(S.UPLOADED, S.READY)


def test_nothing_moves_backwards() -> None:
    assert not can_transition(S.READY, S.UPLOADED)
    assert not can_transition(S.UPLOADED, S.AWAITING_UPLOAD)
    assert not can_transition(S.READY, S.PROCESSING)


def test_terminal_states_have_no_exit() -> None:
    assert all(is_terminal(state) for state in (S.FAILED, S.BLOCKED, S.EXPIRED))
    assert not is_terminal(S.READY)


def test_failed_is_reachable_from_every_live_state() -> None:
    assert sources_of(S.FAILED) == {S.AWAITING_UPLOAD, S.AWAITING_PROOF, S.UPLOADED, S.PROCESSING}


def test_uploaded_only_comes_from_the_client_states() -> None:
    assert sources_of(S.UPLOADED) == {S.AWAITING_UPLOAD, S.AWAITING_PROOF}
