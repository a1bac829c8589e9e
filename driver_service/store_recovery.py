"""Putting this host's share of the store back after Redis lost its data.

The driver service mirrors its own records in memory (state.py) and owns
the kernel state they describe, so when the store comes back empty
(services/epoch.py notices) it writes back, from memory: its records, the
published ports its joined endpoints hold, and its overlay VNIs. Its host
record comes back with the next heartbeat (hostreg.py) and its overlay peers
with the next peer sync (the overlay driver re-announces the ones the store
does not list). While the others are still doing the same, the overlay only
adds entries (`settling`), so no working peer is withdrawn meanwhile.
"""

from __future__ import annotations

import logging

from driver_service.drivers.overlay import OverlayDriver
from driver_service.models import JOINED
from driver_service.ports.allocator import PortAllocator
from driver_service.state import State
from services.epoch import StoreEpoch
from services.errors import CnmError, MultiError

log = logging.getLogger(__name__)


class StoreRecovery:
    def __init__(
        self,
        epoch: StoreEpoch,
        state: State,
        ports: PortAllocator,
        overlay: OverlayDriver,
        *,
        settle: float,
    ) -> None:
        self.epoch = epoch
        self.state = state
        self.ports = ports
        self.overlay = overlay
        self.settle = settle
        self._pending = False

    def settling(self) -> bool:
        return self._pending or self.epoch.settling(self.settle)

    def check(self) -> None:
        """One look at the store's epoch; a rebuild when it changed (retried
        on the next call until it went through)."""
        if self.epoch.check():
            self._pending = True
        if self._pending:
            self.rebuild()
            self._pending = False

    def rebuild(self) -> None:
        errors: list[Exception] = []
        try:
            n = self.state.rewrite_all()
            log.warning("store recovery: %d records of this host written back", n)
        except CnmError as e:
            errors.append(e)
        joined = {
            ep.id: ep.attachment.port_bindings
            for ep in self.state.endpoints()
            if ep.attachment is not None and ep.attachment.state == JOINED
        }
        problems = self.ports.reconcile(joined)
        if problems:
            log.error("store recovery: %s", "; ".join(problems))
        try:
            self.overlay.announce_vnis(self.state.networks())
        except CnmError as e:
            errors.append(e)
        if errors:
            raise errors[0] if len(errors) == 1 else MultiError(errors)
