"""This host's registration in the shared store, and its heartbeat.

`host:<id>` (a hash) and the set `hosts`, as the cross-team contract says:
id, address (this service's gRPC address), advertise_address, drivers (JSON
list of {"name", "scope", "error"}), last_heartbeat (unix seconds, float, on
Redis' own clock: services/liveness.py), ttl (seconds), clock_offset (this
host's clock minus Redis', for diagnosis only). A host is READY while Redis'
TIME - last_heartbeat <= ttl. The record is never expired: a silent host
stays listed, as UNREACHABLE.

`host:<id>:lost_sandboxes` (a set) lists the sandboxes whose network namespace
this host found gone when its driver service started (the host rebooted, or
someone deleted them): the controller reports them as lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from driver_service import testhooks
from driver_service.models import Capability
from services import liveness
from services.periodic import Periodic
from services.store import Store

log = logging.getLogger(__name__)

# KEYS[1] host hash, KEYS[2] the set of hosts. ARGV: field, value, ... (the
# static fields); the heartbeat fields are stamped by liveness.HEARTBEAT after.
_REGISTER = """
redis.call('HSET', KEYS[1], unpack(ARGV))
redis.call('SADD', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
"""


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
        self._register = store.script(_REGISTER)
        self._heartbeat = store.script(liveness.HEARTBEAT)
        self._beat_keys = liveness.heartbeat_keys(store, self.key)

    @property
    def key(self) -> str:
        return self.store.key("host", self.host_id)

    def register(self) -> None:
        """Write the whole record and add the host to `hosts`."""
        drivers = [{"name": d.name, "scope": d.scope, "error": d.error} for d in self.drivers]
        fields = {
            "id": self.host_id,
            "address": self.address,
            "advertise_address": self.advertise_address,
            "drivers": json.dumps(drivers),
            "ttl": repr(float(self.ttl)),
        }
        args = [x for kv in fields.items() for x in kv]
        pipe = self.store.client.pipeline(transaction=True)
        self._register(keys=[self.key, self.store.key("hosts")], args=args, client=pipe)
        self._heartbeat(keys=self._beat_keys, args=self._beat_args(), client=pipe)
        pipe.execute()
        log.info("registered host %s at %s", self.host_id, self.address)

    def beat(self) -> bool:
        """Stamp the heartbeat; False (nothing written) when Redis lost the record."""
        return bool(self._heartbeat(keys=self._beat_keys, args=self._beat_args()))

    def _beat_args(self) -> list[str]:
        # A silence of every host longer than half a ttl is an outage of the store.
        return [repr(testhooks.wallclock()), repr(self.ttl / 2)]

    def start(self) -> None:
        self._loop.start()

    def _tick(self) -> None:
        try:
            # The full record again after Redis came back (it may have lost it).
            if not (self._registered and self.beat()):
                self.register()
                self._registered = True
        except BaseException:
            self._registered = False
            raise

    def stop(self) -> None:
        self._loop.stop()


def report_lost_sandboxes(store: Store, host_id: str, sandbox_ids: Sequence[str]) -> None:
    """Make `host:<id>:lost_sandboxes` exactly `sandbox_ids`."""
    key = store.key("host", host_id, "lost_sandboxes")
    pipe = store.client.pipeline(transaction=True)
    pipe.delete(key)
    if sandbox_ids:
        pipe.sadd(key, *sandbox_ids)
    pipe.execute()
    if sandbox_ids:
        log.warning(
            "%d sandbox(es) lost their network namespace (host reboot?): %s",
            len(sandbox_ids),
            ", ".join(i[:12] for i in sandbox_ids),
        )
