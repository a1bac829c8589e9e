"""What this host's driver service has made, recorded in Redis around each kernel change.

Keys (all under `Store.key("driver", <host_id>, ...)`, driver-private):

    driver:<host>:networks   set of network ids      driver:<host>:net:<id>  JSON record
    driver:<host>:endpoints  set of endpoint ids     driver:<host>:ep:<id>   JSON record
    driver:<host>:sandboxes  set of sandbox ids      driver:<host>:sb:<id>   JSON record

A record is written with an intent state ("creating", "joining", ...) before
the kernel is touched, and rewritten ("ready", "joined") or removed after.
After a crash, `reconcile.py` reads the intents and finishes or undoes them.

One driver service runs per host and it is the only writer of its keys, so
the records are mirrored in memory (loaded once at start, written through:
Redis first, then memory) and reads never go to Redis. Each write is one
MULTI/EXEC, so a record and its index entry change together.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, TypeVar, cast

from driver_service.models import EndpointRecord, NetworkRecord, SandboxRecord
from services.store import Store
from services.values.codec import from_json, to_json

log = logging.getLogger(__name__)
R = TypeVar("R")

_KINDS = {
    # kind: (index set, record key part)
    "net": "networks",
    "ep": "endpoints",
    "sb": "sandboxes",
}


class State:
    def __init__(self, store: Store, host_id: str) -> None:
        self.store = store
        self.host_id = host_id
        self._lock = threading.RLock()
        self._networks: dict[str, NetworkRecord] = {}
        self._endpoints: dict[str, EndpointRecord] = {}
        self._sandboxes: dict[str, SandboxRecord] = {}
        # In-memory indexes: endpoints by network and by the sandbox they are joined to.
        self._by_network: dict[str, set[str]] = {}
        self._by_sandbox: dict[str, set[str]] = {}

    def key(self, *parts: str) -> str:
        return self.store.key("driver", self.host_id, *parts)

    # --- loading --------------------------------------------------------------------------

    def load(self) -> None:
        """Read every record of this host from Redis (at start, before serving)."""
        nets = self._load_kind("net", NetworkRecord)
        eps = self._load_kind("ep", EndpointRecord)
        sbs = self._load_kind("sb", SandboxRecord)
        with self._lock:
            self._networks, self._sandboxes = nets, sbs
            self._endpoints = {}
            self._by_network.clear()
            self._by_sandbox.clear()
            for ep in eps.values():
                self._index_endpoint(ep)

    def _load_kind(self, kind: str, cls: type[R]) -> dict[str, R]:
        client = self.store.client
        ids = sorted(cast("set[str]", client.smembers(self.key(_KINDS[kind]))))  # decoded replies
        if not ids:
            return {}
        raws = client.mget([self.key(kind, i) for i in ids])
        out: dict[str, R] = {}
        for ident, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue
            try:
                out[ident] = from_json(cls, raw)
            except (ValueError, KeyError, TypeError) as e:
                # A record this version cannot read is kept in Redis, untouched.
                log.error("unreadable %s record %s: %s", kind, ident, e)
        return out

    # --- writing --------------------------------------------------------------------------

    def _write(self, kind: str, ident: str, record: Any | None) -> None:
        pipe = self.store.client.pipeline(transaction=True)
        if record is None:
            pipe.delete(self.key(kind, ident))
            pipe.srem(self.key(_KINDS[kind]), ident)
        else:
            pipe.set(self.key(kind, ident), to_json(record))
            pipe.sadd(self.key(_KINDS[kind]), ident)
        pipe.execute()

    def rewrite_all(self) -> int:
        """Write every record in memory back to Redis (after the store lost
        them: services/epoch.py); one MULTI. Returns how many were written."""
        with self._lock:
            kinds = (
                ("net", self._networks),
                ("ep", self._endpoints),
                ("sb", self._sandboxes),
            )
            pipe = self.store.client.pipeline(transaction=True)
            n = 0
            for kind, records in kinds:
                for ident, rec in records.items():
                    pipe.set(self.key(kind, ident), to_json(rec))
                    pipe.sadd(self.key(_KINDS[kind]), ident)
                    n += 1
            pipe.execute()
        return n

    def put_network(self, rec: NetworkRecord) -> None:
        with self._lock:
            self._write("net", rec.id, rec)
            self._networks[rec.id] = rec

    def drop_network(self, network_id: str) -> None:
        with self._lock:
            self._write("net", network_id, None)
            self._networks.pop(network_id, None)

    def put_sandbox(self, rec: SandboxRecord) -> None:
        with self._lock:
            self._write("sb", rec.id, rec)
            self._sandboxes[rec.id] = rec

    def drop_sandbox(self, sandbox_id: str) -> None:
        with self._lock:
            self._write("sb", sandbox_id, None)
            self._sandboxes.pop(sandbox_id, None)

    def put_endpoint(self, rec: EndpointRecord) -> None:
        with self._lock:
            self._write("ep", rec.id, rec)
            self._unindex_endpoint(rec.id)
            self._index_endpoint(rec)

    def drop_endpoint(self, endpoint_id: str) -> None:
        with self._lock:
            self._write("ep", endpoint_id, None)
            self._unindex_endpoint(endpoint_id)

    def _index_endpoint(self, rec: EndpointRecord) -> None:
        self._endpoints[rec.id] = rec
        self._by_network.setdefault(rec.network_id, set()).add(rec.id)
        if rec.attachment is not None:
            self._by_sandbox.setdefault(rec.attachment.sandbox_id, set()).add(rec.id)

    def _unindex_endpoint(self, endpoint_id: str) -> None:
        old = self._endpoints.pop(endpoint_id, None)
        if old is None:
            return
        self._by_network.get(old.network_id, set()).discard(endpoint_id)
        if old.attachment is not None:
            self._by_sandbox.get(old.attachment.sandbox_id, set()).discard(endpoint_id)

    # --- reading --------------------------------------------------------------------------

    def network(self, network_id: str) -> NetworkRecord | None:
        return self._networks.get(network_id)

    def endpoint(self, endpoint_id: str) -> EndpointRecord | None:
        return self._endpoints.get(endpoint_id)

    def sandbox(self, sandbox_id: str) -> SandboxRecord | None:
        return self._sandboxes.get(sandbox_id)

    def networks(self) -> list[NetworkRecord]:
        with self._lock:
            return list(self._networks.values())

    def endpoints(self) -> list[EndpointRecord]:
        with self._lock:
            return list(self._endpoints.values())

    def sandboxes(self) -> list[SandboxRecord]:
        with self._lock:
            return list(self._sandboxes.values())

    def endpoints_of_network(self, network_id: str) -> list[EndpointRecord]:
        with self._lock:
            return self._pick(self._by_network.get(network_id, ()))

    def endpoints_in_sandbox(self, sandbox_id: str) -> list[EndpointRecord]:
        """Endpoints attached (joined, joining or leaving) to a sandbox, in join order."""
        with self._lock:
            eps = self._pick(self._by_sandbox.get(sandbox_id, ()))
        return sorted(eps, key=lambda e: e.attachment.seq if e.attachment else 0)

    def _pick(self, ids: Iterable[str]) -> list[EndpointRecord]:
        return [self._endpoints[i] for i in ids if i in self._endpoints]
