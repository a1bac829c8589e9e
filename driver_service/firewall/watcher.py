"""A thread that keeps cnm's tables in the kernel: `Firewall.ensure()` every interval.

Polling the ruleset generation id (see `genid`) costs ~15 us per tick, so a
one-second period restores a flushed ruleset within about a second without
any measurable load, and without parsing `nft monitor` output.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from services.periodic import Periodic

if TYPE_CHECKING:
    from .firewall import Firewall

log = logging.getLogger(__name__)


class Watcher:
    def __init__(self, firewall: Firewall, interval: float = 1.0) -> None:
        if not 0.05 <= interval <= 60:
            raise ValueError(f"watcher interval {interval} s is outside 0.05..60")
        self._firewall = firewall
        # A failed tick (a concurrent transaction, a briefly missing namespace)
        # is logged and the next tick retries: Periodic never ends the loop.
        self._loop = Periodic("cnm-firewall-watcher", self._tick, interval)

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 10) -> None:
        self._loop.stop(timeout)

    def _tick(self) -> None:
        if self._firewall.ensure():
            log.warning("cnm's nftables tables differed from the desired state; restored")
