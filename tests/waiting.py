"""How every test waits: one factor for every deadline, and `eventually` to poll with one.

`FERRY_TEST_TIMEOUT_FACTOR=3 make test` gives every wait of the suite, unit and integration,
three times as long on a slow or busy machine. Deadlines only bound how long a failing test
takes to fail: a passing test never waits for one (nothing sleeps to wait for something).
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

TIMEOUT_FACTOR = float(os.environ.get("FERRY_TEST_TIMEOUT_FACTOR", "1"))

# Polling a plain function looks at memory: cheap, so often. A coroutine check usually makes a
# request to a real process: ten a second is plenty, and keeps the shared CPU for the services.
FUNCTION_POLL_SECONDS = 0.01
COROUTINE_POLL_SECONDS = 0.1


def scaled(seconds: float) -> float:
    """A deadline of `seconds` on an unloaded machine, stretched by the suite's factor."""
    return seconds * TIMEOUT_FACTOR


# Two overloads, so mypy infers T from a coroutine function's result as well as from a plain
# function's (one signature taking either kind leaves T unsolved).
@overload
async def eventually(
    check: Callable[[], Awaitable[T | None]],
    what: str = ...,
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float | None = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T | None],
    what: str = ...,
    *,
    timeout: float = ...,  # noqa: ASYNC109
    interval: float | None = ...,
) -> T: ...


async def eventually(
    check: Callable[[], Any],
    what: str = "the condition",
    *,
    timeout: float = 20.0,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
    interval: float | None = None,
) -> Any:
    """Call `check()` (a function or a coroutine function) until it returns something truthy,
    and return that.

    An `AssertionError` from `check` counts as "not yet" (so checks may use `assert`); any other
    exception ends the wait at once. After `scaled(timeout)` seconds, raises `AssertionError`
    naming `what` and the last outcome.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(timeout)
    pause = FUNCTION_POLL_SECONDS if interval is None else interval
    while True:
        last: object
        try:
            outcome = check()
            if inspect.isawaitable(outcome):
                if interval is None:
                    pause = COROUTINE_POLL_SECONDS
                outcome = await outcome
        except AssertionError as error:
            last = error
        else:
            if outcome:
                return outcome
            last = outcome
        if loop.time() >= deadline:
            raise AssertionError(f"{what}: still not true after {scaled(timeout):.1f}s: {last!r}")
        await asyncio.sleep(pause)
