"""Flushing conntrack entries of addresses that left, off the caller's path.

After a Leave, flows of the endpoint's address must not survive: a stale UDP
entry (e.g. a DNAT for a published port, or a masqueraded flow) would keep
steering packets of the next owner of that address. Entries are deleted over
ctnetlink (`ctnetlink.py`) on one background thread, so a Leave does not wait
for it. One pass dumps the whole table: the kernel walks its whole hash,
~9 ms of CPU however few entries there are (measured: 262,144 buckets here).
On 2 cores that pass, run at once, slowed the Leave that queued it (its
Redis writes and files: Leave 4.4 ms without it, 8-13 ms with it). So a pass
waits for a lull: `QUIET` seconds with no new address, at most `MAX_DELAY`
after the oldest, and addresses queued meanwhile share it.

The wait must never let the next owner of an address inherit (or lose) its
flows: a Join calls `settle` with its addresses first, which flushes any of
them still queued at once, in the caller, before the address is plumbed.
`wait_idle` (shutdown, tests) runs what is queued without waiting.

What is queued lives in memory only: a driver killed in the lull loses it.
So a starting driver `sweep`s once: every entry with an address inside one
of its networks' subnets that no endpoint (nor gateway) holds goes.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Iterable

from driver_service import ctnetlink

log = logging.getLogger(__name__)

QUIET = 0.1
MAX_DELAY = 1.0


class ConntrackFlusher:
    def __init__(self, quiet: float = QUIET, max_delay: float = MAX_DELAY) -> None:
        self.quiet = quiet
        self.max_delay = max_delay
        self._queue: set[str] = set()
        self._first = 0.0  # when the oldest queued address came
        self._last = 0.0  # when the newest did
        self._running: set[str] = set()  # the pass in progress
        self._urgent = 0  # wait_idle callers: no lull to wait for
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _ips(addresses: list[str]) -> set[str]:
        return {str(ipaddress.ip_address(a)) for a in addresses if a}

    def flush(self, addresses: list[str]) -> None:
        """Queue the deletion of every entry from or to these addresses (no prefix)."""
        ips = self._ips(addresses)
        if not ips:
            return
        now = time.monotonic()
        with self._cv:
            if not self._queue:
                self._first = now
            self._last = now
            self._queue |= ips
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cnm-conntrack", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def settle(self, addresses: list[str]) -> None:
        """Before these addresses are used again: flush those still queued now,
        and wait for a pass in progress that holds any of them."""
        ips = self._ips(addresses)
        if not ips:
            return
        with self._cv:
            self._cv.wait_for(lambda: not (self._running & ips))
            mine = self._queue & ips
            self._queue -= mine
        if mine:
            self.flush_now(mine)

    def _due(self) -> float:
        """Seconds until the queued pass should run (0: now)."""
        if self._urgent:
            return 0.0
        now = time.monotonic()
        return max(0.0, min(self._last + self.quiet, self._first + self.max_delay) - now)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue or self._due() > 0:
                    self._cv.wait(self._due() if self._queue else None)
                batch, self._queue = self._queue, set()
                self._running = batch
            try:
                self.flush_now(batch)
            finally:
                with self._cv:
                    self._running = set()
                    self._cv.notify_all()

    def flush_now(self, ips: set[str]) -> None:
        try:
            ctnetlink.flush_addresses(ips)
        except OSError as e:
            log.warning("conntrack flush of %s failed: %s", ", ".join(sorted(ips)), e)

    def sweep(self, subnets: Iterable[str], held: Iterable[str]) -> int:
        """Delete the entries of every address inside `subnets` (CIDRs) that is
        not in `held` (bare addresses): the flushes a crash may have lost.
        One pass, in the caller; how many entries went."""
        nets = [ipaddress.ip_network(s, strict=False) for s in subnets if s]
        keep = {ipaddress.ip_address(a).packed for a in held if a}
        if not nets:
            return 0

        def stale(found: set[bytes]) -> bool:
            return any(
                a not in keep and any(ipaddress.ip_address(a) in n for n in nets) for a in found
            )

        try:
            deleted = ctnetlink.flush_matching(stale)
        except OSError as e:
            log.warning("conntrack sweep of %s failed: %s", ", ".join(map(str, nets)), e)
            return 0
        if deleted:
            log.info("conntrack: %d entries of addresses no endpoint holds deleted", deleted)
        return deleted

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        """Run what is queued now and wait for it; False on timeout."""
        with self._cv:
            self._urgent += 1
            self._cv.notify_all()
            try:
                return self._cv.wait_for(lambda: not self._queue and not self._running, timeout)
            finally:
                self._urgent -= 1
