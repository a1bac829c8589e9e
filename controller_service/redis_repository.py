"""The controller's store in Redis (what runs).

Keys (all through Store.key):
  net:<id>            JSON Network            net:index   zset of ids (score 0, lexical)
  net:name:<name>     id                      net:<id>:eps  set of endpoint ids
  net:<id>:hosts      hash host -> "pending"|"ready": where the driver has the network
  ep:<id>             JSON Endpoint           ep:index    zset of ids
  ep:name:<net>:<nm>  id (names are unique per network, as in Docker)
  sb:<id>             JSON Sandbox            sb:index    zset of ids
  sb:name:<name>      id                      sb:<id>:eps hash network id -> endpoint id
  req:<request_id>    JSON {"kind","id","by"[,"done"]}  (request_id dedup, with a TTL)
  controller:intents  zset "net:<id>"|"ep:<id>"|"sb:<id>" -> op_since, the
                      records in a transitional state (what the reconciler scans)
  controller:instance:<id>  liveness of a controller process (expires)
  controller:reconciler     the reconciler lease (an instance id, expires)
  controller:hoststate      hash host -> last state reported by an event
  events, events:rev        the event stream (entry id = revision) and its counter
Read only (the driver services write them): hosts, host:<id>,
host:<id>:lost_sandboxes, overlay:host:<host>:vnis, store:resumed.

A transaction WATCHes the keys it reads, checks, then MULTI, the queued
writes (and the events describing them), EXEC; a lost race is retried by
Store.transaction and never overwrites silently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from controller_service.models import Endpoint, Event, Network, Sandbox, from_json, to_json
from controller_service.repository import (
    CLASSES,
    Claim,
    Read,
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
from services import liveness
from services.ids import is_full_id
from services.liveness import StoreClock
from services.store import Store

# KEYS[1] the stream, KEYS[2] the revision counter. Queued inside the MULTI of
# the change it reports: an event exists exactly when its change committed,
# and revisions are strictly increasing across controller replicas.
_APPEND = """
local rev = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], rev .. '-0',
  'type', ARGV[2], 'id', ARGV[3], 'name', ARGV[4], 'time', ARGV[5], 'attrs', ARGV[6])
return rev
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""
# Reads that follow a pointer, in one round trip (run by EVAL_RO: never
# WAITed for, refused if it wrote). KEYS[1] holds an id (a string, or with
# ARGV[2] a hash field); the reply is the record at ARGV[1] .. id, or nil.
# The record's key is built here, not passed: fine on one Redis (Sentinel
# included), not on Redis Cluster, which cnm does not use.
_FOLLOW = """
local id
if #ARGV > 1 then
  id = redis.call('HGET', KEYS[1], ARGV[2])
else
  id = redis.call('GET', KEYS[1])
end
if not id then return false end
return redis.call('GET', ARGV[1] .. id)
"""
# KEYS[1] the set of host ids, ARGV[1] the host hashes' key prefix: every
# registered host with its fields (flat: id, {field, value...}, ...).
_HOSTS = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. id)
end
return out
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


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


def _as_dict(reply: Any) -> dict[str, str]:
    """A hash's fields from HGETALL (a dict in RESP3, a flat list in RESP2 and from Lua)."""
    if isinstance(reply, dict):
        return dict(reply)
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _event(entry_id: str, fields: Mapping[str, str]) -> Event:
    try:
        attrs = json.loads(fields.get("attrs", "{}"))
    except ValueError:
        attrs = {}
    return Event(
        revision=int(entry_id.split("-", 1)[0]),
        type=fields.get("type", ""),
        time=float(fields.get("time", "0") or 0),
        id=fields.get("id", ""),
        name=fields.get("name", ""),
        attributes={str(k): str(v) for k, v in attrs.items()},
    )


class RedisTx(Tx):
    def __init__(self, repo: RedisRepository, pipe: Any) -> None:
        self.repo = repo
        self.keys = repo.keys
        self.pipe = pipe
        self.read_so_far: dict[Read, Any] = {}
        # Request claims this commit completes (their object settles in it).
        self.completes: list[Claim] = []

    # -- reads: each key WATCHed and read in the same round trip, announced
    # reads (prefetch) all in one
    def _command(self, read: Read) -> tuple[str, tuple[str, ...]]:
        if read.what == "record":
            key = self.keys.obj(*read.args)
            return key, ("GET", key)
        if read.what == "endpoint_id_by_name":
            key = self.keys.endpoint_name(*read.args)
            return key, ("GET", key)
        if read.what == "sandbox_endpoints":
            key = self.keys.sandbox_endpoints(*read.args)
            return key, ("HGETALL", key)
        raise ValueError(f"no such read {read.what!r}")

    def prefetch(self, reads: Iterable[Read]) -> None:
        todo = [r for r in dict.fromkeys(reads) if r not in self.read_so_far]
        if not todo:
            return
        commands = [self._command(r) for r in todo]
        replies = self.pipe.watch_reads([k for k, _ in commands], [c for _, c in commands])
        self.read_so_far.update(zip(todo, replies, strict=True))

    def _read(self, read: Read) -> Any:
        # Read once per attempt: the key stays watched, so a second read
        # would see the same value or the commit fails anyway.
        if read not in self.read_so_far:
            key, command = self._command(read)
            self.read_so_far[read] = self.pipe.watch_read(key, *command)
        return self.read_so_far[read]

    def record(self, kind: str, obj_id: str) -> Any:
        raw = self._read(Read.record(kind, obj_id))
        return from_json(CLASSES[kind], raw) if raw else None

    def _get(self, key: str) -> str | None:
        reply: str | None = self.pipe.watch_read(key, "GET", key)
        return reply

    def network_id_by_name(self, name: str) -> str | None:
        return self._get(self.keys.network_name(name))

    def endpoint_id_by_name(self, network_id: str, name: str) -> str | None:
        reply: str | None = self._read(Read.endpoint_name(network_id, name))
        return reply

    def sandbox_id_by_name(self, name: str) -> str | None:
        return self._get(self.keys.sandbox_name(name))

    def network_endpoint_ids(self, network_id: str) -> set[str]:
        key = self.keys.network_endpoints(network_id)
        return set(self.pipe.watch_read(key, "SMEMBERS", key))

    def sandbox_endpoints(self, sandbox_id: str) -> dict[str, str]:
        reply = self._read(Read.sandbox_endpoints(sandbox_id))
        return _as_dict(reply)

    def all_networks(self) -> list[Network]:
        self.pipe.watch(self.keys.index("net"))
        return self.repo.all_networks()

    # -- writes, queued in the MULTI
    def begin(self) -> None:
        self.pipe.multi()

    def put(self, obj: Record) -> None:
        kind, member = kind_of(obj), member_of(obj)
        self.pipe.set(self.keys.obj(kind, obj.id), to_json(obj))
        self.pipe.zadd(self.keys.index(kind), {obj.id: 0})
        self.pipe.set(self.keys.name(obj), obj.id)
        if in_transition(obj):
            self.pipe.zadd(self.keys.intents, {member: obj.op_since})
        else:
            self.pipe.zrem(self.keys.intents, member)
        claim = claim_settled_by(obj)
        if claim is not None:
            key = self.keys.request(claim.request_id)
            self.pipe.set(key, claim.value(done=True), xx=True, keepttl=True)
            self.completes.append(claim)
        self.repo.inflight.note(member, open_=in_transition(obj))

    def remove(self, obj: Record) -> None:
        kind, member = kind_of(obj), member_of(obj)
        self.pipe.delete(self.keys.obj(kind, obj.id), self.keys.name(obj))
        self.pipe.zrem(self.keys.index(kind), obj.id)
        self.pipe.zrem(self.keys.intents, member)
        self.repo.inflight.note(member, open_=False)

    def add_network_endpoint(self, network_id: str, endpoint_id: str) -> None:
        self.pipe.sadd(self.keys.network_endpoints(network_id), endpoint_id)

    def remove_network_endpoint(self, network_id: str, endpoint_id: str) -> None:
        self.pipe.srem(self.keys.network_endpoints(network_id), endpoint_id)

    def attach(self, sandbox_id: str, network_id: str, endpoint_id: str) -> None:
        self.pipe.hset(self.keys.sandbox_endpoints(sandbox_id), network_id, endpoint_id)

    def detach(self, sandbox_id: str, network_id: str) -> None:
        self.pipe.hdel(self.keys.sandbox_endpoints(sandbox_id), network_id)

    def drop_network_indexes(self, network_id: str) -> None:
        self.pipe.delete(
            self.keys.network_endpoints(network_id), self.keys.network_hosts(network_id)
        )

    def drop_sandbox_endpoints(self, sandbox_id: str) -> None:
        self.pipe.delete(self.keys.sandbox_endpoints(sandbox_id))

    def event(
        self,
        type_: str,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        self.repo.append_event(self.pipe, type_, obj_id, name, attributes)


class RedisRepository(Repository):
    def __init__(self, store: Store, events_retained: int = 100_000) -> None:
        super().__init__()
        self.store = store
        # Replies are str (decode_responses); redis-py types them as ResponseT,
        # so this module's methods state the types the rest of the controller sees.
        self.c: Any = store.client
        self.keys = Keys(store)
        self.events_retained = events_retained
        self.stream = store.key("events")
        self.counter = store.key("events", "rev")
        self._append = store.script(_APPEND)
        self._renew = store.script(_RENEW)
        self._release = store.script(_RELEASE)
        self.lease_key = store.key("controller", "reconciler")
        self.host_state_key = store.key("controller", "hoststate")

    def tx(self, fn: Callable[[Tx], T]) -> T:
        last: list[RedisTx] = []

        def attempt(pipe: Any) -> T:
            last[:] = [RedisTx(self, pipe)]
            return fn(last[0])

        result = self.store.transaction(attempt)
        for claim in last[0].completes if last else ():
            claim.done = True
        return result

    # -- records
    def record(self, kind: str, obj_id: str) -> Any:
        raw = self.c.get(self.keys.obj(kind, obj_id))
        return from_json(CLASSES[kind], raw) if raw else None

    def records(self, kind: str, ids: Iterable[str]) -> list[Any]:
        ids = list(ids)
        out: list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for raw in self.c.mget([self.keys.obj(kind, i) for i in chunk]):
                if raw:
                    out.append(from_json(CLASSES[kind], raw))
        return out

    def all_records(self, kind: str) -> list[Any]:
        return self.records(kind, self.c.zrange(self.keys.index(kind), 0, -1))

    def ids_with_prefix(self, kind: str, prefix: str, limit: int = 2) -> list[str]:
        # A lexical range on the index (its scores are all 0).
        return list(
            self.c.zrangebylex(
                self.keys.index(kind), f"[{prefix}", f"({prefix}\xff", start=0, num=limit
            )
        )

    def exists(self, kind: str, obj_id: str) -> bool:
        return bool(self.c.exists(self.keys.obj(kind, obj_id)))

    # -- indexes
    def network_id_by_name(self, name: str) -> str | None:
        return self.c.get(self.keys.network_name(name))

    def endpoint_id_by_name(self, network_id: str, name: str) -> str | None:
        return self.c.get(self.keys.endpoint_name(network_id, name))

    def sandbox_id_by_name(self, name: str) -> str | None:
        return self.c.get(self.keys.sandbox_name(name))

    def _follow(self, kind: str, pointer: str, *field: str) -> Any:
        raw = self.c.eval_ro(_FOLLOW, 1, pointer, self.keys.obj(kind, ""), *field)
        return from_json(CLASSES[kind], raw) if raw else None

    def record_by_name(self, kind: str, name: str) -> Any:
        pointer = self.keys.network_name(name) if kind == "net" else self.keys.sandbox_name(name)
        return self._follow(kind, pointer)

    def first_reads(
        self, network: str, sandbox: str
    ) -> tuple[Network | None, Sandbox | None, tuple[dict[str, dict[str, str]], StoreClock]]:
        pipe = self.c.pipeline(transaction=False)
        refs = [("net", network), ("sb", sandbox)]
        for kind, text in refs:
            # A full id is read as one; anything else (or a full id that is not
            # one) is followed as a name: the caller resolves what both miss.
            if is_full_id(text):
                pipe.get(self.keys.obj(kind, text))
            if text:
                pointer = (
                    self.keys.network_name(text) if kind == "net" else self.keys.sandbox_name(text)
                )
                pipe.eval_ro(_FOLLOW, 1, pointer, self.keys.obj(kind, ""))
        liveness.queue_clock(pipe, self.store)
        pipe.eval_ro(_HOSTS, 1, self.store.key("hosts"), self.store.key("host", ""))
        replies = iter(pipe.execute())
        found: list[Any] = []
        for kind, text in refs:
            raws = [next(replies) for _ in range(is_full_id(text) + bool(text))]
            raw = next((r for r in raws if r), None)
            found.append(from_json(CLASSES[kind], raw) if raw else None)
        clock = liveness.read_clock([next(replies) for _ in range(liveness.CLOCK_REPLIES)])
        return found[0], found[1], (self._hosts_found(next(replies)), clock)

    def sandbox_endpoint(self, sandbox_id: str, network_id: str) -> Endpoint | None:
        return self._follow("ep", self.keys.sandbox_endpoints(sandbox_id), network_id)  # type: ignore[no-any-return]

    def network_endpoint_ids(self, network_id: str) -> set[str]:
        return set(self.c.smembers(self.keys.network_endpoints(network_id)))

    def endpoint_counts(self) -> list[tuple[Network, int]]:
        networks = self.all_networks()
        with self.c.pipeline(transaction=False) as pipe:
            for net in networks:
                pipe.scard(self.keys.network_endpoints(net.id))
            counts = pipe.execute()
        return list(zip(networks, counts, strict=True))

    def sandbox_endpoints(self, sandbox_id: str) -> dict[str, str]:
        return dict(self.c.hgetall(self.keys.sandbox_endpoints(sandbox_id)))

    def network_hosts(self, network_id: str) -> set[str]:
        return set(self.c.hkeys(self.keys.network_hosts(network_id)))

    def network_ready_on(self, network_id: str, host: str) -> bool:
        return self.c.hget(self.keys.network_hosts(network_id), host) == "ready"

    def mark_network_host(self, network_id: str, host: str, *, ready: bool) -> None:
        key = self.keys.network_hosts(network_id)
        if ready:
            self.c.hset(key, host, "ready")
        else:
            self.c.hsetnx(key, host, "pending")

    # -- intents
    def intents(self) -> list[tuple[str, str]]:
        out = []
        for member in self.c.zrange(self.keys.intents, 0, -1):
            kind, _, obj_id = member.partition(":")
            out.append((kind, obj_id))
        return out

    def drop_intent(self, kind: str, obj_id: str) -> None:
        self.c.zrem(self.keys.intents, f"{kind}:{obj_id}")

    # -- request ids
    def claim_request(
        self, request_id: str, kind: str, obj_id: str, ttl: float, by: str
    ) -> dict | None:
        check_request_id(request_id)
        key = self.keys.request(request_id)
        value = Claim(request_id, kind, obj_id, by).value(done=False)
        if self.c.set(key, value, nx=True, px=int(ttl * 1000)):
            return None
        raw = self.c.get(key)
        return json.loads(raw) if raw else {}

    def request_done(self, request_id: str, kind: str, obj_id: str, by: str) -> None:
        value = Claim(request_id, kind, obj_id, by).value(done=True)
        self.c.set(self.keys.request(request_id), value, xx=True, keepttl=True)

    def request_claim(self, request_id: str) -> dict | None:
        raw = self.c.get(self.keys.request(request_id))
        return json.loads(raw) if raw else None

    def forget_request(self, request_id: str) -> None:
        self.c.delete(self.keys.request(request_id))

    # -- events
    def append_event(
        self,
        client: Any,
        type_: str,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Queues the event on `client` (a pipeline in MULTI, or a plain client)."""
        self._append(
            keys=[self.stream, self.counter],
            args=[
                self.events_retained,
                str(type_),
                obj_id,
                name,
                repr(time.time()),
                json.dumps(dict(attributes or {}), sort_keys=True),
            ],
            client=client,
        )

    def emit(
        self,
        type_: str,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        self.append_event(self.c, type_, obj_id, name, attributes)

    def last_revision(self) -> int:
        return int(self.c.get(self.counter) or 0)

    def read_events(self, after: int, count: int = 256, block_ms: int | None = None) -> list[Event]:
        kw: dict[str, Any] = {"count": count}
        if block_ms is not None:
            kw["block"] = block_ms
        reply = self.c.xread({self.stream: f"{after}-0"}, **kw)
        return [
            _event(entry_id, fields)
            for _stream, entries in reply or []
            for entry_id, fields in entries
        ]

    # -- controller instances
    def _instance_key(self, instance: str) -> str:
        return self.store.key("controller", "instance", instance)

    def mark_alive(self, instance: str, description: str, ttl: float) -> None:
        self.c.set(self._instance_key(instance), description, px=int(ttl * 1000))

    def is_alive(self, instance: str) -> bool:
        return bool(self.c.exists(self._instance_key(instance)))

    def acquire_lease(self, instance: str, ttl: float) -> bool:
        return bool(self._renew(keys=[self.lease_key], args=[instance, int(ttl * 1000)]))

    def release_lease(self, instance: str) -> None:
        self._release(keys=[self.lease_key], args=[instance])

    def lease_holder(self) -> str | None:
        return self.c.get(self.lease_key)

    def host_states(self) -> dict[str, str]:
        return dict(self.c.hgetall(self.host_state_key))

    def record_host_state(
        self, host_id: str, state: str, type_: str, attributes: Mapping[str, str]
    ) -> None:
        pipe = self.c.pipeline(transaction=True)
        pipe.hset(self.host_state_key, host_id, state)
        self.append_event(pipe, type_, host_id, host_id, attributes)
        pipe.execute()

    # -- hosts
    def host_records(self) -> tuple[dict[str, dict[str, str]], StoreClock]:
        pipe = self.c.pipeline(transaction=False)
        liveness.queue_clock(pipe, self.store)
        pipe.eval_ro(_HOSTS, 1, self.store.key("hosts"), self.store.key("host", ""))
        replies = pipe.execute()
        clock = liveness.read_clock(replies[: liveness.CLOCK_REPLIES])
        return self._hosts_found(replies[liveness.CLOCK_REPLIES]), clock

    @staticmethod
    def _hosts_found(flat: list[Any]) -> dict[str, dict[str, str]]:
        found = {h: _as_dict(f) for h, f in zip(flat[::2], flat[1::2], strict=True) if f}
        return dict(sorted(found.items()))

    def lost_sandboxes(self, host_ids: Iterable[str]) -> set[str]:
        ids = sorted(set(host_ids))
        if not ids:
            return set()
        pipe = self.c.pipeline(transaction=False)
        for host_id in ids:
            pipe.smembers(self.store.key("host", host_id, "lost_sandboxes"))
        return set().union(*pipe.execute())

    def network_using_vni(self, vni: int) -> str | None:
        hosts = sorted(self.c.smembers(self.store.key("hosts")))
        if not hosts:
            return None
        pipe = self.c.pipeline(transaction=False)
        for host in hosts:
            pipe.hget(self.store.key("overlay", "host", host, "vnis"), str(vni))
        return next((n for n in pipe.execute() if n), None)
