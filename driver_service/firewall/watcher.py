"""A thread that keeps cnm's tables in the kernel: `Firewall.ensure()` every interval.

Polling the ruleset generation id (see `genid`) costs ~15 us per tick, so a
one-second period restores a flushed ruleset within about a second without
any measurable load, and without parsing `nft monitor` output.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .firewall import Firewall

log = logging.getLogger(__name__)


class Watcher:
    def __init__(self, firewall: Firewall, interval: float = 1.0) -> None:
        if not 0.05 <= interval <= 60:
            raise ValueError(f"watcher interval {interval} s is outside 0.05..60")
        self._firewall = firewall
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cnm-firewall-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if self._firewall.ensure():
                    log.warning("cnm's nftables tables differed from the desired state; restored")
            except Exception:
                # Keep watching: the next tick retries, and a transient failure (a
                # concurrent transaction, a briefly missing namespace) must not end it.
                log.exception("firewall self-check failed")
