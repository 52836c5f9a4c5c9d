import pytest

from gateway.rate_limit import TokenBucket


def test_a_new_bucket_allows_a_whole_burst_then_refuses() -> None:
    bucket = TokenBucket(rate_per_second=20, burst=40, now=0.0)
    assert all(bucket.try_take(0.0) for _ in range(40))
    assert not bucket.try_take(0.0)


def test_tokens_come_back_at_the_rate() -> None:
    bucket = TokenBucket(rate_per_second=20, burst=40, now=0.0)
    for _ in range(40):
        bucket.try_take(0.0)
    assert not bucket.try_take(0.01)  # 0.2 of a token
    assert bucket.try_take(0.05)  # one whole token by now
    assert not bucket.try_take(0.05)
    assert bucket.seconds_until_a_token(0.05) == pytest.approx(0.05)


def test_a_refused_attempt_costs_nothing() -> None:
    bucket = TokenBucket(rate_per_second=1, burst=1, now=0.0)
    assert bucket.try_take(0.0)
    for moment in (0.1, 0.5, 0.9):
        assert not bucket.try_take(moment)
    assert bucket.try_take(1.0)


def test_a_long_pause_refills_only_up_to_the_burst() -> None:
    bucket = TokenBucket(rate_per_second=20, burst=40, now=0.0)
    bucket.try_take(0.0)
    assert bucket.tokens(3600.0) == 40.0
    assert sum(bucket.try_take(3600.0) for _ in range(100)) == 40


def test_a_clock_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate_per_second=10, burst=2, now=100.0)
    assert bucket.try_take(100.0)
    assert bucket.try_take(100.0)
    assert not bucket.try_take(50.0)
    assert not bucket.try_take(100.05)  # the earlier clock did not move the refill point back
    assert bucket.try_take(100.11)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_bucket_needs_a_positive_rate_and_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        TokenBucket(rate_per_second=rate, burst=burst, now=0.0)
