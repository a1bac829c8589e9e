"""Undo stacks for multi-step operations, and the crash hook used by tests."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CRASH_ENV = "CNM_TEST_CRASH_AT"


class Undo(contextlib.ExitStack):
    """`with Undo() as undo:` register `undo.step(...)` right after each step
    that must be reversed on failure; `undo.commit()` once everything worked.

    A failing undo step is logged and recorded in `failures`, and never
    replaces the error that caused the rollback.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[Exception] = []

    def step(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        def safe() -> None:
            try:
                fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - rollback is best effort
                log.warning("rollback step %r failed: %s", what, e)
                self.failures.append(e)

        self.callback(safe)

    def commit(self) -> None:
        self.pop_all()


def crash_point(name: str) -> None:
    """Dies like kill -9 at `name` when CNM_TEST_CRASH_AT says so (tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        log.critical("test hook %s=%s: exiting abruptly", CRASH_ENV, name)
        os._exit(137)
