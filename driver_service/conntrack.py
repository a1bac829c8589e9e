"""Flushing conntrack entries of addresses that left, off the caller's path.

After a Leave, flows of the endpoint's address must not survive: a stale UDP
entry (e.g. a DNAT for a published port, or a masqueraded flow) would keep
steering packets of the next owner of that address. Entries are deleted over
ctnetlink (`ctnetlink.py`) on one background thread, so a Leave does not wait
for it; addresses queued meanwhile share one pass (one dump of the table: the
kernel walks its whole hash, ~10 ms of CPU however few entries there are, so
a burst of Leaves pays it once). `wait_idle` lets shutdown and tests wait.
"""

from __future__ import annotations

import ipaddress
import logging
import threading

from driver_service import ctnetlink

log = logging.getLogger(__name__)


class ConntrackFlusher:
    def __init__(self) -> None:
        self._queue: set[str] = set()
        self._cv = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None

    def flush(self, addresses: list[str]) -> None:
        """Queue the deletion of every entry from or to these addresses (no prefix)."""
        ips = [str(ipaddress.ip_address(a)) for a in addresses if a]
        if not ips:
            return
        with self._cv:
            self._queue.update(ips)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cnm-conntrack", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                batch, self._queue = self._queue, set()
                self._busy = True
            try:
                self.flush_now(batch)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def flush_now(self, ips: set[str]) -> None:
        try:
            ctnetlink.flush_addresses(ips)
        except OSError as e:
            log.warning("conntrack flush of %s failed: %s", ", ".join(sorted(ips)), e)

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: not self._queue and not self._busy, timeout)
