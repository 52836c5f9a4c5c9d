import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from transcode_worker.pool import DerivePool


def crash() -> int:
    os._exit(9)  # what a segfaulting or OOM-killed decoder looks like to the pool


def answer() -> int:
    return 42


async def test_a_pool_whose_process_died_is_replaced() -> None:
    pool = DerivePool(1)
    try:
        with pytest.raises(BrokenProcessPool):
            await (await pool.run(crash))
        assert pool.replacements == 1
        assert await (await pool.run(answer)) == 42
    finally:
        await pool.close()


def own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


async def test_pool_processes_run_their_steps_below_the_worker() -> None:
    """Verification on the event loop wins over derivation; a video pool set 19 steps down
    loses to an image pool set 10 steps down (nice is capped at 19)."""
    here = own_niceness()
    for steps in (10, 19):
        pool = DerivePool(1, niceness=steps)
        try:
            assert await (await pool.run(own_niceness)) == min(19, here + steps)
            assert await pool.run_isolated(own_niceness) == min(19, here + steps)
        finally:
            await pool.close()
