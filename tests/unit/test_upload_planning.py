import hashlib

import pytest

from media_service.planning import (
    MultipartPlan,
    SinglePlan,
    expected_proof,
    new_challenge,
    plan_upload,
    proof_matches,
)

MIB = 1024 * 1024


def test_below_the_threshold_is_one_put() -> None:
    assert plan_upload(16 * MIB - 1, threshold=16 * MIB, part_size=8 * MIB) == SinglePlan(
        16 * MIB - 1
    )


def test_at_the_threshold_is_multipart() -> None:
    plan = plan_upload(16 * MIB, threshold=16 * MIB, part_size=8 * MIB)
    assert plan == MultipartPlan(size=16 * MIB, part_size=8 * MIB, part_count=2)


def test_parts_add_up_and_only_the_last_is_short() -> None:
    size = 100 * MIB + 12345
    plan = plan_upload(size, threshold=16 * MIB, part_size=8 * MIB)
    assert isinstance(plan, MultipartPlan)
    assert plan.part_count == 13
    lengths = [plan.part_length(n) for n in range(1, plan.part_count + 1)]
    assert sum(lengths) == size
    assert set(lengths[:-1]) == {8 * MIB}
    assert 0 < lengths[-1] <= 8 * MIB


def test_huge_files_grow_the_part_size_to_stay_under_10000_parts() -> None:
    size = 200 * 1024 * MIB  # 200 GiB
    plan = plan_upload(size, threshold=16 * MIB, part_size=8 * MIB)
    assert isinstance(plan, MultipartPlan)
    assert plan.part_count <= 10_000
    assert plan.part_size % MIB == 0


def test_part_numbers_outside_the_plan_are_refused() -> None:
    plan = MultipartPlan(size=20 * MIB, part_size=8 * MIB, part_count=3)
    with pytest.raises(ValueError, match="outside"):
        plan.part_length(4)
    with pytest.raises(ValueError, match="outside"):
        plan.part_length(0)


def test_challenges_stay_inside_the_content() -> None:
    for size in (1, 100, 65536, 10 * MIB):
        for _ in range(50):
            challenge = new_challenge(size, 65536)
            assert challenge.length == min(size, 65536)
            assert 0 <= challenge.offset <= size - challenge.length
            assert len(bytes.fromhex(challenge.nonce)) == 16


def test_challenges_are_fresh() -> None:
    assert len({new_challenge(10 * MIB, 65536).nonce for _ in range(100)}) == 100


def test_proof_is_sha256_of_nonce_then_range() -> None:
    nonce = "00ff" * 8
    chunk = b"some bytes of the file"
    expected = hashlib.sha256(bytes.fromhex(nonce) + chunk).hexdigest()
    assert expected_proof(nonce, chunk) == expected
    assert proof_matches(nonce, chunk, expected)
    assert proof_matches(nonce, chunk, expected.upper())
    assert not proof_matches(nonce, chunk, hashlib.sha256(chunk).hexdigest())
