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
import threading
import time
from collections.abc import Sequence

from driver_service.models import Capability
from services.errors import CnmError
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="cnm-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # start() follows a successful register(): the first wait is a full interval.
        registered = True
        while not self._stop.wait(self.interval):
            try:
                # The full record again after Redis came back (it may have lost it).
                if registered and self.store.client.exists(self.key):
                    self.beat()
                else:
                    self.register()
                    registered = True
            except CnmError as e:
                log.warning("heartbeat of host %s failed: %s", self.host_id, e)
                registered = False

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
