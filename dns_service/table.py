"""The resolver's view of the cluster: which names each sandbox may resolve, in memory.

Pure logic (no sockets, no Redis): the feed (`feed.py`) puts and drops
records as the controller's events arrive, and every query is answered from
here without a round trip to the store.

Scope rules (Docker's embedded DNS):
- a sandbox resolves the names of the endpoints on the networks it is joined
  to, and nothing of the others (an internal network's names are therefore
  invisible from every other network);
- each joined endpoint is known by its endpoint name, its sandbox's name, its
  aliases, and each of those suffixed with `.<network name>`;
- several endpoints answering one name all answer, rotated per query (round
  robin);
- a name inside the scope (one label, or ending in `.<network name>` of a
  shared network) that nobody holds is NXDOMAIN; other names go upstream,
  unless every network of the sandbox is internal (no way out: SERVFAIL).
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Net:
    id: str
    name: str
    internal: bool = False
    subnets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ep:
    """A joined endpoint: what it answers to, and its addresses (no prefix)."""

    id: str
    network_id: str
    sandbox_id: str
    names: tuple[str, ...]
    ipv4: str = ""
    ipv6: str = ""


@dataclass(frozen=True)
class Sb:
    id: str
    name: str
    host: str = ""
    # Network namespace path on its host ("" until the driver made it).
    key: str = ""
    # The sandbox's own DNS servers (`--dns`); empty: the host's.
    servers: tuple[str, ...] = ()


class Kind(enum.Enum):
    ANSWER = "answer"  # records (possibly none: the name exists, not with that type)
    NXDOMAIN = "nxdomain"
    FORWARD = "forward"
    SERVFAIL = "servfail"


@dataclass(frozen=True)
class Result:
    kind: Kind
    # A/AAAA: addresses; PTR: one "name.network" target.
    values: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()


@dataclass
class _NetIndex:
    net: Net
    names: dict[str, list[str]] = field(default_factory=dict)  # name -> endpoint ids
    addresses: dict[IPAddress, str] = field(default_factory=dict)  # address -> endpoint id


def _lower(name: str) -> str:
    return name.lower().rstrip(".")


def reverse_pointer(qname: str) -> IPAddress | None:
    """The address a PTR query asks about, or None when the name is no reverse name."""
    labels = _lower(qname).split(".")
    try:
        if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
            return ipaddress.IPv4Address(".".join(reversed(labels[:4])))
        if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
            nibbles = "".join(reversed(labels[:32]))
            return ipaddress.IPv6Address(int(nibbles, 16))
    except ValueError:
        return None
    return None


class NameTable:
    """Networks, joined endpoints and sandboxes; thread-safe (one lock, short holds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nets: dict[str, _NetIndex] = {}
        self._eps: dict[str, Ep] = {}
        self._sbs: dict[str, Sb] = {}
        # sandbox id -> {network id: endpoint count}: the networks a sandbox shares.
        self._joined: dict[str, dict[str, int]] = {}
        self._rr = itertools.count()

    # --- updates (from the feed) ---------------------------------------------------------

    def replace(self, nets: Iterable[Net], sbs: Iterable[Sb], eps: Iterable[Ep]) -> None:
        """Start over from a full load."""
        with self._lock:
            self._nets = {n.id: _NetIndex(n) for n in nets}
            self._sbs = {s.id: s for s in sbs}
            self._eps = {}
            self._joined = {}
            for ep in eps:
                self._add_ep(ep)

    def put_network(self, net: Net) -> None:
        with self._lock:
            idx = self._nets.get(net.id)
            if idx is None:
                self._nets[net.id] = _NetIndex(net)
                return
            idx.net = net
            # `name.network` keys follow a renamed network (never happens today; cheap).
            for ep in [e for e in self._eps.values() if e.network_id == net.id]:
                self._drop_ep(ep.id)
                self._add_ep(ep)

    def drop_network(self, network_id: str) -> None:
        with self._lock:
            for ep in [e for e in self._eps.values() if e.network_id == network_id]:
                self._drop_ep(ep.id)
            self._nets.pop(network_id, None)

    def put_sandbox(self, sb: Sb) -> None:
        with self._lock:
            self._sbs[sb.id] = sb

    def drop_sandbox(self, sandbox_id: str) -> None:
        with self._lock:
            self._sbs.pop(sandbox_id, None)

    def put_endpoint(self, ep: Ep) -> None:
        with self._lock:
            self._drop_ep(ep.id)
            self._add_ep(ep)

    def drop_endpoint(self, endpoint_id: str) -> None:
        with self._lock:
            self._drop_ep(endpoint_id)

    def _add_ep(self, ep: Ep) -> None:
        idx = self._nets.get(ep.network_id)
        if idx is None:
            return  # its network's record comes first; a put_network re-adds nothing lost
        self._eps[ep.id] = ep
        netname = _lower(idx.net.name)
        for name in self._names_of(ep, netname):
            idx.names.setdefault(name, []).append(ep.id)
        for a in (ep.ipv4, ep.ipv6):
            if a:
                idx.addresses[ipaddress.ip_address(a)] = ep.id
        nets = self._joined.setdefault(ep.sandbox_id, {})
        nets[ep.network_id] = nets.get(ep.network_id, 0) + 1

    def _drop_ep(self, endpoint_id: str) -> None:
        ep = self._eps.pop(endpoint_id, None)
        if ep is None:
            return
        idx = self._nets.get(ep.network_id)
        if idx is not None:
            for name in self._names_of(ep, _lower(idx.net.name)):
                ids = idx.names.get(name, [])
                if ep.id in ids:
                    ids.remove(ep.id)
                if not ids:
                    idx.names.pop(name, None)
            for a in (ep.ipv4, ep.ipv6):
                if a and idx.addresses.get(ipaddress.ip_address(a)) == ep.id:
                    del idx.addresses[ipaddress.ip_address(a)]
        nets = self._joined.get(ep.sandbox_id, {})
        left = nets.get(ep.network_id, 0) - 1
        if left > 0:
            nets[ep.network_id] = left
        else:
            nets.pop(ep.network_id, None)
            if not nets:
                self._joined.pop(ep.sandbox_id, None)

    @staticmethod
    def _names_of(ep: Ep, netname: str) -> list[str]:
        base = list(dict.fromkeys(_lower(n) for n in ep.names if n))
        return base + [f"{n}.{netname}" for n in base]

    # --- reads ---------------------------------------------------------------------------

    def sandboxes_on(self, host: str) -> list[Sb]:
        with self._lock:
            return [s for s in self._sbs.values() if s.host == host and s.key]

    def sandbox(self, sandbox_id: str) -> Sb | None:
        with self._lock:
            return self._sbs.get(sandbox_id)

    def knows(self, endpoint_id: str) -> bool:
        with self._lock:
            return endpoint_id in self._eps

    def resolve(self, sandbox_id: str, qname: str, qtype: str) -> Result:
        """What to answer sandbox `sandbox_id` asking `qname` (type "A", "AAAA", "PTR"...)."""
        q = _lower(qname)
        with self._lock:
            sb = self._sbs.get(sandbox_id)
            servers = sb.servers if sb else ()
            found = (self._nets.get(n) for n in sorted(self._joined.get(sandbox_id, {})))
            shared = [idx for idx in found if idx is not None]
            if not shared:
                return Result(Kind.FORWARD, servers=servers)
            if qtype == "PTR":
                return self._ptr(q, shared, servers)
            ids = [i for idx in shared for i in idx.names.get(q, ())]
            if ids:
                return Result(Kind.ANSWER, self._addresses(ids, qtype))
            in_scope = "." not in q or any(q.endswith("." + _lower(i.net.name)) for i in shared)
            if in_scope:
                return Result(Kind.NXDOMAIN)
            if all(idx.net.internal for idx in shared):
                return Result(Kind.SERVFAIL)
            return Result(Kind.FORWARD, servers=servers)

    def _addresses(self, ids: list[str], qtype: str) -> tuple[str, ...]:
        eps = [self._eps[i] for i in dict.fromkeys(ids)]
        if qtype == "A":
            out = [e.ipv4 for e in eps if e.ipv4]
        elif qtype == "AAAA":
            out = [e.ipv6 for e in eps if e.ipv6]
        else:
            return ()
        if len(out) > 1:
            n = next(self._rr) % len(out)
            out = out[n:] + out[:n]
        return tuple(out)

    def _ptr(self, q: str, shared: list[_NetIndex], servers: tuple[str, ...]) -> Result:
        address = reverse_pointer(q)
        if address is None:
            return Result(Kind.FORWARD, servers=servers)
        for idx in shared:
            ep_id = idx.addresses.get(address)
            if ep_id is not None:
                ep = self._eps[ep_id]
                first = next((n for n in ep.names if n), ep.id[:12])
                return Result(Kind.ANSWER, (f"{first}.{idx.net.name}",))
        for idx in shared:
            for subnet in idx.net.subnets:
                net = ipaddress.ip_network(subnet, strict=False)
                if address.version == net.version and address in net:
                    return Result(Kind.NXDOMAIN)
        if all(idx.net.internal for idx in shared):
            return Result(Kind.SERVFAIL)
        return Result(Kind.FORWARD, servers=servers)
