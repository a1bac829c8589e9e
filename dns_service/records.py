"""Reading the controller's records from Redis, reduced to what the resolver needs.

The controller's keys and JSON (controller_service.redis_repository / models) are
the contract; this module only reads them: `net:<id>`, `ep:<id>`, `sb:<id>`,
their `<kind>:index` sets, and the event revision counter. Only endpoints in
state JOINED answer to names; only READY sandboxes have a namespace to serve.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from controller_service.models import Endpoint, EndpointState, Network, Sandbox, State, from_json
from controller_service.redis_repository import Keys
from dns_service.table import Ep, Net, Sb
from services.store import Store

_BATCH = 500
# XREAD of one stream with decode_responses: [(stream, [(entry id, fields)])] or None.
_XreadReply = list[tuple[str, list[tuple[str, dict[str, str]]]]] | None


def to_net(n: Network) -> Net:
    return Net(id=n.id, name=n.name, internal=n.internal, subnets=tuple(p.subnet for p in n.pools))


def sandbox_names(s: Sandbox | None) -> tuple[str, ...]:
    """What a sandbox's endpoints answer to besides their own names and aliases:
    its name, its hostname, and its container's short id (Docker's DNSNames)."""
    if s is None:
        return ()
    return (s.name, s.hostname.split(".", 1)[0], s.container_id[:12])


def to_ep(e: Endpoint, extra_names: tuple[str, ...] = ()) -> Ep | None:
    """The endpoint as the resolver knows it; None unless it is joined."""
    if e.state is not EndpointState.JOINED or not e.sandbox_id:
        return None
    names = (e.name, *extra_names, *e.aliases)
    return Ep(
        id=e.id,
        network_id=e.network_id,
        sandbox_id=e.sandbox_id,
        names=tuple(dict.fromkeys(n for n in names if n)),
        ipv4=e.ipv4_address.split("/", 1)[0],
        ipv6=e.ipv6_address.split("/", 1)[0],
    )


def to_sb(s: Sandbox) -> Sb | None:
    if s.state is not State.READY:
        return None
    return Sb(id=s.id, name=s.name, host=s.host, key=s.key, servers=tuple(s.dns.servers))


class Records:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = Keys(store)
        self.revision_key = store.key("events", "rev")
        self.stream = store.key("events")

    def revision(self) -> int:
        return int(self.store.client.get(self.revision_key) or 0)

    def _all(self, kind: str, cls: type) -> Iterator:
        ids = cast(list[str], self.store.client.zrange(self.keys.index(kind), 0, -1))
        for i in range(0, len(ids), _BATCH):
            chunk = ids[i : i + _BATCH]
            for text in self.store.client.mget([self.keys.obj(kind, x) for x in chunk]):
                if text:
                    yield from_json(cls, text)

    def load(self) -> tuple[list[Net], list[Sb], list[Ep]]:
        nets = [to_net(n) for n in self._all("net", Network)]
        sandboxes = {s.id: s for s in self._all("sb", Sandbox)}
        sbs = [sb for sb in map(to_sb, sandboxes.values()) if sb is not None]
        eps = [
            ep
            for e in self._all("ep", Endpoint)
            if (ep := to_ep(e, sandbox_names(sandboxes.get(e.sandbox_id)))) is not None
        ]
        return nets, sbs, eps

    def _one(self, kind: str, cls: type, obj_id: str):
        text = self.store.client.get(self.keys.obj(kind, obj_id))
        return from_json(cls, text) if text else None

    def network(self, obj_id: str) -> Net | None:
        n = self._one("net", Network, obj_id)
        return to_net(n) if n is not None and n.state is State.READY else None

    def sandbox(self, obj_id: str) -> Sb | None:
        s = self._one("sb", Sandbox, obj_id)
        return to_sb(s) if s is not None else None

    def endpoint(self, obj_id: str) -> Ep | None:
        e = self._one("ep", Endpoint, obj_id)
        if e is None or not e.sandbox_id:
            return None
        return to_ep(e, sandbox_names(self._one("sb", Sandbox, e.sandbox_id)))

    def events(self, after: int, block_ms: int) -> list[tuple[int, str, str]]:
        """(revision, type, object id) of the events after `after`, oldest first."""
        reply = cast(
            _XreadReply,
            self.store.client.xread({self.stream: f"{after}-0"}, count=512, block=block_ms),
        )
        out = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                out.append(
                    (int(entry_id.split("-", 1)[0]), fields.get("type", ""), fields.get("id", ""))
                )
        return out
