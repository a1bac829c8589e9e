"""The controller's store in one process's memory: the contract of
repository.Repository without Redis, for unit tests of the orchestration.

A transaction runs under one lock and its writes apply only when `fn`
returns, so a raise anywhere leaves nothing behind, as a discarded MULTI
does. Hosts are what the test registers (`add_host`), judged against the
test's clock (`clock`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller_service.models import Event, Network, from_json, to_json
from controller_service.repository import (
    CLASSES,
    Claim,
    Record,
    Repository,
    T,
    Tx,
    check_request_id,
    claim_settled_by,
    in_transition,
    kind_of,
    member_of,
)
from services.liveness import StoreClock


def _name_key(obj: Record) -> tuple[str, ...]:
    kind = kind_of(obj)
    if kind == "ep":
        return ("ep", obj.network_id, obj.name)  # type: ignore[union-attr]
    return (kind, obj.name)


@dataclass
class _State:
    # kind -> id -> JSON (stored as JSON, as in Redis: a reader gets a copy)
    records: dict[str, dict[str, str]] = field(default_factory=lambda: {k: {} for k in CLASSES})
    names: dict[tuple[str, ...], str] = field(default_factory=dict)
    network_endpoints: dict[str, set[str]] = field(default_factory=dict)
    network_hosts: dict[str, dict[str, str]] = field(default_factory=dict)
    sandbox_endpoints: dict[str, dict[str, str]] = field(default_factory=dict)
    intents: dict[str, float] = field(default_factory=dict)
    requests: dict[str, tuple[str, float]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    revision: int = 0
    alive: dict[str, float] = field(default_factory=dict)
    lease: tuple[str, float] | None = None
    host_states: dict[str, str] = field(default_factory=dict)
    hosts: dict[str, dict[str, str]] = field(default_factory=dict)
    lost_sandboxes: dict[str, set[str]] = field(default_factory=dict)
    vnis: dict[str, dict[int, str]] = field(default_factory=dict)


class MemoryTx(Tx):
    def __init__(self, repo: MemoryRepository) -> None:
        self.repo = repo
        self.s = repo.s
        self.writes: list[Callable[[], object]] = []
        self.begun = False

    def record(self, kind: str, obj_id: str) -> Any:
        return self.repo.record(kind, obj_id)

    def network_id_by_name(self, name: str) -> str | None:
        return self.repo.network_id_by_name(name)

    def endpoint_id_by_name(self, network_id: str, name: str) -> str | None:
        return self.repo.endpoint_id_by_name(network_id, name)

    def sandbox_id_by_name(self, name: str) -> str | None:
        return self.repo.sandbox_id_by_name(name)

    def network_endpoint_ids(self, network_id: str) -> set[str]:
        return self.repo.network_endpoint_ids(network_id)

    def sandbox_endpoints(self, sandbox_id: str) -> dict[str, str]:
        return self.repo.sandbox_endpoints(sandbox_id)

    def all_networks(self) -> list[Network]:
        return self.repo.all_networks()

    def begin(self) -> None:
        self.begun = True

    def _write(self, fn: Callable[[], object]) -> None:
        assert self.begun, "a write before begin()"
        self.writes.append(fn)

    def put(self, obj: Record) -> None:
        kind, member, text = kind_of(obj), member_of(obj), to_json(obj)
        claim = claim_settled_by(obj)

        def write() -> None:
            self.s.records[kind][obj.id] = text
            self.s.names[_name_key(obj)] = obj.id
            if in_transition(obj):
                self.s.intents[member] = obj.op_since
            else:
                self.s.intents.pop(member, None)
            if claim is not None:
                self.repo.mark_done(claim)

        self._write(write)
        self.repo.inflight.note(member, open_=in_transition(obj))

    def remove(self, obj: Record) -> None:
        kind, member = kind_of(obj), member_of(obj)

        def write() -> None:
            self.s.records[kind].pop(obj.id, None)
            self.s.names.pop(_name_key(obj), None)
            self.s.intents.pop(member, None)

        self._write(write)
        self.repo.inflight.note(member, open_=False)

    def add_network_endpoint(self, network_id: str, endpoint_id: str) -> None:
        self._write(lambda: self.s.network_endpoints.setdefault(network_id, set()).add(endpoint_id))

    def remove_network_endpoint(self, network_id: str, endpoint_id: str) -> None:
        self._write(lambda: self.s.network_endpoints.get(network_id, set()).discard(endpoint_id))

    def attach(self, sandbox_id: str, network_id: str, endpoint_id: str) -> None:
        self._write(
            lambda: self.s.sandbox_endpoints.setdefault(sandbox_id, {}).update(
                {network_id: endpoint_id}
            )
        )

    def detach(self, sandbox_id: str, network_id: str) -> None:
        self._write(lambda: self.s.sandbox_endpoints.get(sandbox_id, {}).pop(network_id, None))

    def drop_network_indexes(self, network_id: str) -> None:
        def write() -> None:
            self.s.network_endpoints.pop(network_id, None)
            self.s.network_hosts.pop(network_id, None)

        self._write(write)

    def drop_sandbox_endpoints(self, sandbox_id: str) -> None:
        self._write(lambda: self.s.sandbox_endpoints.pop(sandbox_id, None))

    def event(
        self,
        type_: str,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        self._write(lambda: self.repo._append(type_, obj_id, name, attributes))


class MemoryRepository(Repository):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.clock = clock
        self.s = _State()
        self._lock = threading.RLock()
        self._appended = threading.Condition(self._lock)

    def tx(self, fn: Callable[[Tx], T]) -> T:
        with self._lock:
            tx = MemoryTx(self)
            result = fn(tx)
            for write in tx.writes:
                write()
            return result

    # -- records
    def record(self, kind: str, obj_id: str) -> Any:
        with self._lock:
            text = self.s.records[kind].get(obj_id)
        return from_json(CLASSES[kind], text) if text else None

    def records(self, kind: str, ids: Iterable[str]) -> list[Any]:
        return [r for r in (self.record(kind, i) for i in ids) if r is not None]

    def all_records(self, kind: str) -> list[Any]:
        with self._lock:
            ids = sorted(self.s.records[kind])
        return self.records(kind, ids)

    def ids_with_prefix(self, kind: str, prefix: str, limit: int = 2) -> list[str]:
        with self._lock:
            return sorted(i for i in self.s.records[kind] if i.startswith(prefix))[:limit]

    def exists(self, kind: str, obj_id: str) -> bool:
        with self._lock:
            return obj_id in self.s.records[kind]

    # -- indexes
    def network_id_by_name(self, name: str) -> str | None:
        with self._lock:
            return self.s.names.get(("net", name))

    def endpoint_id_by_name(self, network_id: str, name: str) -> str | None:
        with self._lock:
            return self.s.names.get(("ep", network_id, name))

    def sandbox_id_by_name(self, name: str) -> str | None:
        with self._lock:
            return self.s.names.get(("sb", name))

    def network_endpoint_ids(self, network_id: str) -> set[str]:
        with self._lock:
            return set(self.s.network_endpoints.get(network_id, ()))

    def endpoint_counts(self) -> list[tuple[Network, int]]:
        return [(n, len(self.network_endpoint_ids(n.id))) for n in self.all_networks()]

    def sandbox_endpoints(self, sandbox_id: str) -> dict[str, str]:
        with self._lock:
            return dict(self.s.sandbox_endpoints.get(sandbox_id, {}))

    def network_hosts(self, network_id: str) -> set[str]:
        with self._lock:
            return set(self.s.network_hosts.get(network_id, {}))

    def network_ready_on(self, network_id: str, host: str) -> bool:
        with self._lock:
            return self.s.network_hosts.get(network_id, {}).get(host) == "ready"

    def mark_network_host(self, network_id: str, host: str, *, ready: bool) -> None:
        with self._lock:
            hosts = self.s.network_hosts.setdefault(network_id, {})
            if ready:
                hosts[host] = "ready"
            else:
                hosts.setdefault(host, "pending")

    # -- intents
    def intents(self) -> list[tuple[str, str]]:
        with self._lock:
            members = sorted(self.s.intents, key=lambda m: (self.s.intents[m], m))
        return [(m.partition(":")[0], m.partition(":")[2]) for m in members]

    def drop_intent(self, kind: str, obj_id: str) -> None:
        with self._lock:
            self.s.intents.pop(f"{kind}:{obj_id}", None)

    # -- request ids
    def _live_request(self, request_id: str) -> str | None:
        value, expires = self.s.requests.get(request_id, ("", 0.0))
        return value if value and self.clock() < expires else None

    def claim_request(
        self, request_id: str, kind: str, obj_id: str, ttl: float, by: str
    ) -> dict | None:
        check_request_id(request_id)
        with self._lock:
            raw = self._live_request(request_id)
            if raw is None:
                value = Claim(request_id, kind, obj_id, by).value(done=False)
                self.s.requests[request_id] = (value, self.clock() + ttl)
                return None
            return json.loads(raw)

    def mark_done(self, claim: Claim) -> None:
        """The claim as done, if it is still there (under the lock)."""
        if self._live_request(claim.request_id) is not None:
            value = claim.value(done=True)
            self.s.requests[claim.request_id] = (value, self.s.requests[claim.request_id][1])
        claim.done = True

    def request_done(self, request_id: str, kind: str, obj_id: str, by: str) -> None:
        with self._lock:
            self.mark_done(Claim(request_id, kind, obj_id, by))

    def request_claim(self, request_id: str) -> dict | None:
        with self._lock:
            raw = self._live_request(request_id)
        return json.loads(raw) if raw else None

    def forget_request(self, request_id: str) -> None:
        with self._lock:
            self.s.requests.pop(request_id, None)

    # -- events
    def _append(
        self, type_: str, obj_id: str, name: str, attributes: Mapping[str, str] | None
    ) -> None:
        with self._lock:
            self.s.revision += 1
            self.s.events.append(
                Event(
                    revision=self.s.revision,
                    type=str(type_),
                    time=self.clock(),
                    id=obj_id,
                    name=name,
                    attributes=dict(attributes or {}),
                )
            )
            self._appended.notify_all()

    def emit(
        self,
        type_: str,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        self._append(type_, obj_id, name, attributes)

    def last_revision(self) -> int:
        with self._lock:
            return self.s.revision

    def read_events(self, after: int, count: int = 256, block_ms: int | None = None) -> list[Event]:
        with self._lock:
            if block_ms is not None and self.s.revision <= after:
                self._appended.wait(block_ms / 1000)
            return [e for e in self.s.events if e.revision > after][:count]

    # -- controller instances
    def mark_alive(self, instance: str, description: str, ttl: float) -> None:
        with self._lock:
            self.s.alive[instance] = self.clock() + ttl

    def is_alive(self, instance: str) -> bool:
        with self._lock:
            return self.s.alive.get(instance, 0.0) > self.clock()

    def acquire_lease(self, instance: str, ttl: float) -> bool:
        with self._lock:
            lease = self.s.lease
            if lease is not None and lease[0] != instance and lease[1] > self.clock():
                return False
            self.s.lease = (instance, self.clock() + ttl)
            return True

    def release_lease(self, instance: str) -> None:
        with self._lock:
            if self.s.lease is not None and self.s.lease[0] == instance:
                self.s.lease = None

    def lease_holder(self) -> str | None:
        with self._lock:
            lease = self.s.lease
            return lease[0] if lease is not None and lease[1] > self.clock() else None

    def host_states(self) -> dict[str, str]:
        with self._lock:
            return dict(self.s.host_states)

    def record_host_state(
        self, host_id: str, state: str, type_: str, attributes: Mapping[str, str]
    ) -> None:
        with self._lock:
            self.s.host_states[host_id] = state
            self._append(type_, host_id, host_id, attributes)

    # -- hosts
    def add_host(self, host_id: str, address: str, drivers: list[dict], ttl: float = 10.0) -> None:
        """Registers a host as its driver service would, beating now."""
        with self._lock:
            self.s.hosts[host_id] = {
                "id": host_id,
                "address": address,
                "drivers": json.dumps(drivers),
                "last_heartbeat": repr(self.clock()),
                "ttl": repr(ttl),
            }

    def host_records(self) -> tuple[dict[str, dict[str, str]], StoreClock]:
        with self._lock:
            now = self.clock()
            # The store has been up far longer than any ttl: no restart grace.
            return {h: dict(f) for h, f in self.s.hosts.items()}, StoreClock(now, now - 1e6)

    def lost_sandboxes(self, host_ids: Iterable[str]) -> set[str]:
        with self._lock:
            return set().union(*(self.s.lost_sandboxes.get(h, set()) for h in host_ids))

    def network_using_vni(self, vni: int) -> str | None:
        with self._lock:
            return next((v[vni] for v in self.s.vnis.values() if vni in v), None)
