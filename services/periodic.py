"""A background loop that outlives every failure: call a function every
`interval` seconds in a daemon thread; any exception is logged and followed
by a (capped) backoff, never the end of the loop.

Every periodic job of every service (heartbeats, reconcilers, resyncs,
self-heal) runs on this, so a Redis outage, a bug in one pass, or a
surprise from the kernel costs a log line and a retry, not a dead thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from services.errors import CnmError

log = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self,
        name: str,
        fn: Callable[[], object],
        interval: float,
        *,
        max_backoff: float | None = None,
        run_first: bool = False,
    ) -> None:
        """`fn` every `interval` s (the first call after one interval, or at once
        with `run_first`); after n failures in a row the wait is
        min(interval * 2**n, max_backoff) (default: no longer than `interval`)."""
        if interval <= 0:
            raise ValueError(f"{name}: interval {interval} s must be positive")
        self.name = name
        self.fn = fn
        self.interval = interval
        self.max_backoff = interval if max_backoff is None else max(interval, max_backoff)
        self.run_first = run_first
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _delay(self) -> float:
        if not self.failures:
            return self.interval
        return min(self.interval * 2 ** min(self.failures, 16), self.max_backoff)

    def _run(self) -> None:
        wait = 0.0 if self.run_first else self.interval
        while not self._stop.wait(wait):
            self.run_once()
            wait = self._delay()

    def run_once(self) -> bool:
        """One call of `fn`, its failure logged (the first of a streak loudly,
        the rest quietly); True when it succeeded."""
        try:
            self.fn()
        except CnmError as e:
            self._failed(e, traceback=False)
            return False
        except Exception as e:  # noqa: BLE001 - the loop must survive any one bug
            self._failed(e, traceback=True)
            return False
        if self.failures:
            log.info("%s: working again after %d failed passes", self.name, self.failures)
        self.failures = 0
        return True

    def _failed(self, e: Exception, *, traceback: bool) -> None:
        self.failures += 1
        level = logging.WARNING if self.failures == 1 or traceback else logging.DEBUG
        log.log(level, "%s failed (%d in a row): %s", self.name, self.failures, e,
                exc_info=traceback)  # fmt: skip
