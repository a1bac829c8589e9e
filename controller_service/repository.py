"""The controller's records in Redis: objects, name and id indexes, intents.

Keys (all through Store.key):
  net:<id>            JSON Network            net:index   zset of ids (score 0, lexical)
  net:name:<name>     id                      net:<id>:eps  set of endpoint ids
  net:<id>:hosts      hash host -> "pending"|"ready": where the driver has the network
  ep:<id>             JSON Endpoint           ep:index    zset of ids
  ep:name:<net>:<nm>  id (names are unique per network, as in Docker)
  sb:<id>             JSON Sandbox            sb:index    zset of ids
  sb:name:<name>      id                      sb:<id>:eps hash network id -> endpoint id
  req:<request_id>    JSON {"kind","id"}      (request_id dedup, with a TTL)
  controller:intents  zset "net:<id>"|"ep:<id>"|"sb:<id>" -> op_since, the
                      records in a transitional state (what the reconciler scans)

Every write goes through `tx`: WATCH the keys read, check, MULTI, queue the
writes (and the event describing them), EXEC; a lost race is retried by
Store.transaction and never overwrites silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from controller_service.events import EventLog, EventType
from controller_service.inflight import Inflight
from controller_service.models import (
    Endpoint,
    EndpointState,
    Network,
    Sandbox,
    State,
    from_json,
    to_json,
)
from services.errors import InvalidArgument
from services.store import Store

T = TypeVar("T")
Record = Network | Endpoint | Sandbox

_KIND: dict[type, str] = {Network: "net", Endpoint: "ep", Sandbox: "sb"}
_SETTLED = {State.READY, EndpointState.READY, EndpointState.JOINED}


def kind_of(obj: Record) -> str:
    return _KIND[type(obj)]


def in_transition(obj: Record) -> bool:
    return obj.state not in _SETTLED


class Keys:
    def __init__(self, store: Store) -> None:
        self.k = store.key
        self.intents = store.key("controller", "intents")

    def obj(self, kind: str, obj_id: str) -> str:
        return self.k(kind, obj_id)

    def index(self, kind: str) -> str:
        return self.k(kind, "index")

    def network_name(self, name: str) -> str:
        return self.k("net", "name", name)

    def endpoint_name(self, network_id: str, name: str) -> str:
        return self.k("ep", "name", network_id, name)

    def sandbox_name(self, name: str) -> str:
        return self.k("sb", "name", name)

    def name(self, obj: Record) -> str:
        if isinstance(obj, Network):
            return self.network_name(obj.name)
        if isinstance(obj, Endpoint):
            return self.endpoint_name(obj.network_id, obj.name)
        return self.sandbox_name(obj.name)

    def network_endpoints(self, network_id: str) -> str:
        return self.k("net", network_id, "eps")

    def network_hosts(self, network_id: str) -> str:
        return self.k("net", network_id, "hosts")

    def sandbox_endpoints(self, sandbox_id: str) -> str:
        return self.k("sb", sandbox_id, "eps")

    def request(self, request_id: str) -> str:
        return self.k("req", request_id)


_CLASSES: dict[str, type] = {"net": Network, "ep": Endpoint, "sb": Sandbox}


class Tx:
    """One optimistic transaction: reads (after WATCH), `begin()`, then writes."""

    def __init__(self, repo: Repository, pipe: Any) -> None:
        self.repo = repo
        self.keys = repo.keys
        self.pipe = pipe

    # -- reads, before begin()
    def watch(self, *keys: str) -> None:
        self.pipe.watch(*keys)

    def _get(self, kind: str, obj_id: str) -> Any:
        key = self.keys.obj(kind, obj_id)
        self.pipe.watch(key)
        raw = self.pipe.get(key)
        return from_json(_CLASSES[kind], raw) if raw else None

    def network(self, obj_id: str) -> Network | None:
        return self._get("net", obj_id)

    def endpoint(self, obj_id: str) -> Endpoint | None:
        return self._get("ep", obj_id)

    def sandbox(self, obj_id: str) -> Sandbox | None:
        return self._get("sb", obj_id)

    def name_taken(self, key: str) -> str | None:
        self.pipe.watch(key)
        return self.pipe.get(key)

    def members(self, key: str) -> set[str]:
        self.pipe.watch(key)
        return set(self.pipe.smembers(key))

    def hash(self, key: str) -> dict[str, str]:
        self.pipe.watch(key)
        return dict(self.pipe.hgetall(key))

    # -- writes, after begin()
    def begin(self) -> None:
        self.pipe.multi()

    def put(self, obj: Record) -> None:
        """Stores `obj`, keeping its index, name and intent entries in step."""
        kind = kind_of(obj)
        member = f"{kind}:{obj.id}"
        self.pipe.set(self.keys.obj(kind, obj.id), to_json(obj))
        self.pipe.zadd(self.keys.index(kind), {obj.id: 0})
        self.pipe.set(self.keys.name(obj), obj.id)
        if in_transition(obj):
            self.pipe.zadd(self.keys.intents, {member: obj.op_since})
        else:
            self.pipe.zrem(self.keys.intents, member)
        self.repo.inflight.note(member, open_=in_transition(obj))

    def remove(self, obj: Record) -> None:
        kind = kind_of(obj)
        self.pipe.delete(self.keys.obj(kind, obj.id), self.keys.name(obj))
        self.pipe.zrem(self.keys.index(kind), obj.id)
        self.pipe.zrem(self.keys.intents, f"{kind}:{obj.id}")
        self.repo.inflight.note(f"{kind}:{obj.id}", open_=False)

    def event(
        self,
        type_: EventType,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        self.repo.events.append(self.pipe, type_, obj_id, name, attributes)


class Repository:
    def __init__(self, store: Store, events: EventLog) -> None:
        self.store = store
        self.c = store.client
        self.keys = Keys(store)
        self.events = events
        self.inflight = Inflight()

    def tx(self, fn: Callable[[Tx], T], *watch: str) -> T:
        return self.store.transaction(lambda pipe: fn(Tx(self, pipe)), *watch)

    # -- generic reads
    def _one(self, kind: str, obj_id: str) -> Any:
        raw = self.c.get(self.keys.obj(kind, obj_id))
        return from_json(_CLASSES[kind], raw) if raw else None

    def _many(self, kind: str, ids: Iterable[str]) -> list[Any]:
        ids = list(ids)
        out: list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for raw in self.c.mget([self.keys.obj(kind, i) for i in chunk]):
                if raw:
                    out.append(from_json(_CLASSES[kind], raw))
        return out

    def _all(self, kind: str) -> list[Any]:
        return self._many(kind, self.c.zrange(self.keys.index(kind), 0, -1))

    def ids_with_prefix(self, kind: str, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` ids starting with `prefix` (lexical range on the index)."""
        return list(
            self.c.zrangebylex(
                self.keys.index(kind), f"[{prefix}", f"({prefix}\xff", start=0, num=limit
            )
        )

    def exists(self, kind: str, obj_id: str) -> bool:
        return bool(self.c.exists(self.keys.obj(kind, obj_id)))

    # -- networks
    def network(self, obj_id: str) -> Network | None:
        return self._one("net", obj_id)

    def networks(self, ids: Iterable[str]) -> list[Network]:
        return self._many("net", ids)

    def all_networks(self) -> list[Network]:
        return self._all("net")

    def network_id_by_name(self, name: str) -> str | None:
        return self.c.get(self.keys.network_name(name))

    def network_endpoint_ids(self, network_id: str) -> set[str]:
        return set(self.c.smembers(self.keys.network_endpoints(network_id)))

    def endpoint_counts(self) -> list[tuple[Network, int]]:
        """Every network with its number of endpoints (one pipelined round trip)."""
        networks = self.all_networks()
        with self.c.pipeline(transaction=False) as pipe:
            for net in networks:
                pipe.scard(self.keys.network_endpoints(net.id))
            counts = pipe.execute()
        return list(zip(networks, counts, strict=True))

    def network_hosts(self, network_id: str) -> set[str]:
        """Hosts whose driver has (or may have) the network."""
        return set(self.c.hkeys(self.keys.network_hosts(network_id)))

    # -- endpoints
    def endpoint(self, obj_id: str) -> Endpoint | None:
        return self._one("ep", obj_id)

    def endpoints(self, ids: Iterable[str]) -> list[Endpoint]:
        return self._many("ep", ids)

    def all_endpoints(self) -> list[Endpoint]:
        return self._all("ep")

    def endpoint_id_by_name(self, network_id: str, name: str) -> str | None:
        return self.c.get(self.keys.endpoint_name(network_id, name))

    # -- sandboxes
    def sandbox(self, obj_id: str) -> Sandbox | None:
        return self._one("sb", obj_id)

    def sandboxes(self, ids: Iterable[str]) -> list[Sandbox]:
        return self._many("sb", ids)

    def all_sandboxes(self) -> list[Sandbox]:
        return self._all("sb")

    def sandbox_id_by_name(self, name: str) -> str | None:
        return self.c.get(self.keys.sandbox_name(name))

    def sandbox_endpoints(self, sandbox_id: str) -> dict[str, str]:
        """network id -> endpoint id joined (or joining) to the sandbox."""
        return dict(self.c.hgetall(self.keys.sandbox_endpoints(sandbox_id)))

    # -- intents
    def intents(self) -> list[tuple[str, str]]:
        """(kind, id) of every record in a transitional state, oldest first."""
        out = []
        for member in self.c.zrange(self.keys.intents, 0, -1):
            kind, _, obj_id = member.partition(":")
            out.append((kind, obj_id))
        return out

    def record(self, kind: str, obj_id: str) -> Record | None:
        return self._one(kind, obj_id)

    # -- request ids
    def claim_request(
        self, request_id: str, kind: str, obj_id: str, ttl: float, by: str
    ) -> dict | None:
        """Records that `request_id` makes `kind` `obj_id`, claimed by controller
        instance `by`. None when claimed now; else what the first request with
        this id recorded ({"kind", "id", "by"}, and "done" once it succeeded).
        """
        if len(request_id) > 256:
            raise InvalidArgument(
                "request_id longer than 256 characters", reason="INVALID_REQUEST_ID"
            )
        key = self.keys.request(request_id)
        value = json.dumps({"kind": kind, "id": obj_id, "by": by})
        if self.c.set(key, value, nx=True, px=int(ttl * 1000)):
            return None
        raw = self.c.get(key)
        return json.loads(raw) if raw else {}

    def request_done(self, request_id: str, kind: str, obj_id: str, by: str) -> None:
        """Marks the claim as made: a retry finding no object then knows it was
        deleted since, not lost by a first attempt that failed."""
        value = json.dumps({"kind": kind, "id": obj_id, "by": by, "done": True})
        self.c.set(self.keys.request(request_id), value, xx=True, keepttl=True)

    def request_claim(self, request_id: str) -> dict | None:
        raw = self.c.get(self.keys.request(request_id))
        return json.loads(raw) if raw else None

    def request_known(self, request_id: str) -> bool:
        return bool(self.c.exists(self.keys.request(request_id)))

    def forget_request(self, request_id: str) -> None:
        self.c.delete(self.keys.request(request_id))
