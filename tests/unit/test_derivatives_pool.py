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
