"""The deadline of the gRPC call being served, for the calls it makes.

The servicer records the caller's remaining time; outgoing calls to IPAM and
driver services take the smaller of their configured timeout and what is
left, so a host that does not answer fails the caller's call in time instead
of outliving it. Pure: no grpc import.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

# Time kept back to turn a downstream timeout into a clear error for the caller.
MARGIN = 0.25
MINIMUM = 0.05

_deadline: ContextVar[float | None] = ContextVar("cnm_call_deadline", default=None)


@contextlib.contextmanager
def serving(remaining: float | None) -> Iterator[None]:
    """Within: outgoing calls respect `remaining` seconds (None: no caller deadline)."""
    token = _deadline.set(time.monotonic() + remaining if remaining is not None else None)
    try:
        yield
    finally:
        _deadline.reset(token)


def timeout(configured: float) -> float:
    """The timeout for one outgoing call."""
    end = _deadline.get()
    if end is None:
        return configured
    return max(MINIMUM, min(configured, end - time.monotonic() - MARGIN))
