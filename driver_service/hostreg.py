"""This host's registration in the shared store, and its heartbeat.

`host:<id>` (a hash) and the set `hosts`, as the cross-team contract says:
id, address (this service's gRPC address), advertise_address, drivers (JSON
list of {"name", "scope", "error"}), last_heartbeat (unix seconds, float),
ttl (seconds). A host is READY while now - last_heartbeat <= ttl. The record
is never expired: a silent host stays listed, as UNREACHABLE.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from driver_service.models import Capability
from services.periodic import Periodic
from services.store import Store

log = logging.getLogger(__name__)


class HostRegistration:
    def __init__(
        self,
        store: Store,
        *,
        host_id: str,
        address: str,
        advertise_address: str,
        drivers: Sequence[Capability],
        interval: float,
        ttl: float,
    ) -> None:
        self.store = store
        self.host_id = host_id
        self.address = address
        self.advertise_address = advertise_address
        self.drivers = list(drivers)
        self.interval = interval
        self.ttl = ttl
        # start() follows a successful register(): the first wait is a full interval.
        self._registered = True
        self._loop = Periodic("cnm-heartbeat", self._tick, interval)

    @property
    def key(self) -> str:
        return self.store.key("host", self.host_id)

    def register(self) -> None:
        """Write the whole record and add the host to `hosts`."""
        drivers = [{"name": d.name, "scope": d.scope, "error": d.error} for d in self.drivers]
        pipe = self.store.client.pipeline(transaction=True)
        pipe.hset(
            self.key,
            mapping={
                "id": self.host_id,
                "address": self.address,
                "advertise_address": self.advertise_address,
                "drivers": json.dumps(drivers),
                "last_heartbeat": repr(time.time()),
                "ttl": repr(float(self.ttl)),
            },
        )
        pipe.sadd(self.store.key("hosts"), self.host_id)
        pipe.execute()
        log.info("registered host %s at %s", self.host_id, self.address)

    def beat(self) -> None:
        self.store.client.hset(self.key, "last_heartbeat", repr(time.time()))

    def start(self) -> None:
        self._loop.start()

    def _tick(self) -> None:
        try:
            # The full record again after Redis came back (it may have lost it).
            if self._registered and self.store.client.exists(self.key):
                self.beat()
            else:
                self.register()
                self._registered = True
        except BaseException:
            self._registered = False
            raise

    def stop(self) -> None:
        self._loop.stop()
