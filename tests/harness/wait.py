"""The one way tests wait for something: poll a condition until a deadline.

Tests never sleep a fixed time to let something happen; they poll what they
expect with a generous deadline (the machine may be loaded) and fail naming
what did not happen and the last value seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(
    predicate: Callable[[], T],
    what: str = "condition",
    timeout: float = 10.0,
    interval: float = 0.1,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """predicate()'s first truthy result, polled every `interval` seconds.

    AssertionError naming `what` and the last result when `timeout` passes;
    exceptions of the `retry_on` types count as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except retry_on as e:
            last: object = e
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
        time.sleep(interval)


def eventually(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.1
) -> bool:
    """Whether predicate() became truthy before `timeout` (for `assert eventually(...)`)."""
    try:
        until(predicate, timeout=timeout, interval=interval)
    except AssertionError:
        return False
    return True
