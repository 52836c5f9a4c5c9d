from shared.rate_limits import BucketState, refill, seconds_until_a_token


def test_a_new_bucket_is_full() -> None:
    assert refill(None, now=100.0, capacity=12, per_second=0.2) == 12.0


def test_tokens_come_back_at_the_rate_and_never_above_capacity() -> None:
    drained = BucketState(tokens=0.0, updated_at=100.0)
    assert refill(drained, now=105.0, capacity=12, per_second=0.2) == 1.0
    assert refill(drained, now=10_000.0, capacity=12, per_second=0.2) == 12.0


def test_a_clock_going_backwards_adds_nothing() -> None:
    state = BucketState(tokens=3.0, updated_at=100.0)
    assert refill(state, now=90.0, capacity=12, per_second=0.2) == 3.0


def test_the_wait_is_until_one_whole_token() -> None:
    assert seconds_until_a_token(0.0, 0.2) == 5
    assert seconds_until_a_token(0.9, 0.2) == 1
    assert seconds_until_a_token(0.999, 1.0) == 1
