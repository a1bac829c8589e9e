"""Overlay peers in the shared store, and what each host must program from them.

A peer is an endpoint joined to an overlay network somewhere: its addresses,
its MAC and the VTEP (underlay address) of the host it is on. Keys:

    overlay:<network id>:peers   hash: endpoint id -> JSON {host, vtep, mac, ip, ipv6}
    overlay:peers                pub/sub channel: a network id whose peers changed
    overlay:<network id>:rev     counter, raised with every change of the peers
    overlay:<network id>:seen    hash: host -> the rev its VXLAN device carries
                                 (only hosts where the network is built); a
                                 Join waits (bounded) until every live one
                                 has its new peer, so the first packet from
                                 another host finds its neighbour entry
    overlay:host:<host>:vnis     hash: VNI -> network id, the overlay networks
                                 recorded on that host (the controller never
                                 hands out a VNI a host still uses)

Only the host an endpoint is joined on writes (or removes) its entry; every
write is followed by a PUBLISH in the same MULTI, so other hosts hear of it at
once. Messages can be lost (a subscriber reconnecting), which is why every
host also resyncs periodically. Liveness comes from the hosts' own records
(`host:<id>`, written by their heartbeats, judged on Redis' clock by
services/liveness.py): a peer whose host stopped heartbeating for longer than
its ttl is not programmed anywhere, but its entry stays, so it comes back as
soon as the host does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import cast

from redis.typing import EncodableT

from services import liveness
from services.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    endpoint_id: str
    host: str
    vtep: str
    mac: str
    # Bare addresses (no prefix length); "" when absent.
    ip: str = ""
    ipv6: str = ""

    def to_json(self) -> str:
        d = asdict(self)
        del d["endpoint_id"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, endpoint_id: str, text: str) -> Peer:
        d = json.loads(text)
        return cls(
            endpoint_id=endpoint_id,
            host=str(d["host"]),
            vtep=str(d["vtep"]),
            mac=str(d["mac"]),
            ip=str(d.get("ip") or ""),
            ipv6=str(d.get("ipv6") or ""),
        )


@dataclass(frozen=True)
class Wanted:
    """The static entries a host's VXLAN device must carry for one network."""

    # (MAC, remote VTEP)
    fdb: frozenset[tuple[str, str]] = frozenset()
    # (IP, MAC)
    neighbours: frozenset[tuple[str, str]] = frozenset()


def wanted(peers: Iterable[Peer], live: Mapping[str, bool], me: str, my_vtep: str) -> Wanted:
    """Entries for every remote peer on a live host; pure.

    Local peers need none (they are ports of the local bridge). One MAC maps
    to one VTEP and one IP to one MAC: were two entries to disagree (a stale
    record), the one of the smallest endpoint id wins, on every host alike.
    """
    by_mac: dict[str, str] = {}
    by_ip: dict[str, str] = {}
    for p in sorted(peers, key=lambda p: p.endpoint_id):
        if p.host == me or p.vtep == my_vtep or not live.get(p.host, False):
            continue
        by_mac.setdefault(p.mac, p.vtep)
        for ip in (p.ip, p.ipv6):
            if ip:
                by_ip.setdefault(ip, p.mac)
    return Wanted(fdb=frozenset(by_mac.items()), neighbours=frozenset(by_ip.items()))


class PeerTable:
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def channel(self) -> str:
        return self.store.key("overlay", "peers")

    def key(self, network_id: str) -> str:
        return self.store.key("overlay", network_id, "peers")

    def rev_key(self, network_id: str) -> str:
        return self.store.key("overlay", network_id, "rev")

    def seen_key(self, network_id: str) -> str:
        return self.store.key("overlay", network_id, "seen")

    def put(self, network_id: str, peer: Peer) -> int:
        """Add or replace one entry; returns the network's new rev."""
        pipe = self.store.client.pipeline(transaction=True)
        pipe.hset(self.key(network_id), peer.endpoint_id, peer.to_json())
        pipe.incr(self.rev_key(network_id))
        pipe.publish(self.channel, network_id)
        return int(pipe.execute()[1])

    def rev(self, network_id: str) -> int:
        return int(self.store.client.get(self.rev_key(network_id)) or 0)

    def ack(self, network_id: str, host: str, rev: int | None) -> None:
        """`host` carries the peers as of `rev` (None: the network is not built there)."""
        if rev is None:
            self.store.client.hdel(self.seen_key(network_id), host)
        else:
            self.store.client.hset(self.seen_key(network_id), host, str(rev))

    def behind(self, network_id: str, me: str, rev: int) -> list[str]:
        """Live hosts other than `me` with the network built whose entries are older than `rev`."""
        seen = {
            h: liveness.as_float(r)
            for h, r in self._hgetall(self.seen_key(network_id)).items()
            if h != me
        }
        late = [h for h, r in seen.items() if r < rev]
        if not late:
            return []
        live = self.liveness(late, me=me)
        return [h for h in late if live[h]]

    def announce(self, network_id: str, peers: Iterable[Peer]) -> None:
        """Add (or refresh) entries without touching any other (re-announcing
        this host's peers after the store lost them)."""
        mine: dict[EncodableT, EncodableT] = {p.endpoint_id: p.to_json() for p in peers}
        if not mine:
            return
        pipe = self.store.client.pipeline(transaction=True)
        pipe.hset(self.key(network_id), mapping=mine)
        pipe.incr(self.rev_key(network_id))
        pipe.publish(self.channel, network_id)
        pipe.execute()

    def vnis_key(self, host: str) -> str:
        return self.store.key("overlay", "host", host, "vnis")

    def set_vni(self, host: str, vni: int, network_id: str | None) -> None:
        """Record (or with None forget) that `host` has overlay network `network_id` on `vni`."""
        if network_id is None:
            self.store.client.hdel(self.vnis_key(host), str(vni))
        else:
            self.store.client.hset(self.vnis_key(host), str(vni), network_id)

    def set_vnis(self, host: str, vnis: Mapping[int, str]) -> None:
        """Make `host`'s VNI records exactly `vnis`."""
        pipe = self.store.client.pipeline(transaction=True)
        pipe.delete(self.vnis_key(host))
        if vnis:
            records: dict[EncodableT, EncodableT] = {str(v): n for v, n in vnis.items()}
            pipe.hset(self.vnis_key(host), mapping=records)
        pipe.execute()

    def remove(self, network_id: str, endpoint_ids: Iterable[str]) -> None:
        ids = list(endpoint_ids)
        if not ids:
            return
        pipe = self.store.client.pipeline(transaction=True)
        pipe.hdel(self.key(network_id), *ids)
        pipe.incr(self.rev_key(network_id))
        pipe.publish(self.channel, network_id)
        pipe.execute()

    def snapshot(self, network_id: str) -> tuple[int, list[Peer]]:
        """(rev, peers) read together: the peers include every change up to rev."""
        pipe = self.store.client.pipeline(transaction=True)
        pipe.get(self.rev_key(network_id))
        pipe.hgetall(self.key(network_id))
        rev, entries = pipe.execute()
        return int(rev or 0), self._parse(network_id, entries)

    def peers(self, network_id: str) -> list[Peer]:
        return self._parse(network_id, self._hgetall(self.key(network_id)))

    def _hgetall(self, key: str) -> dict[str, str]:
        return cast("dict[str, str]", self.store.client.hgetall(key))  # decoded replies

    def _parse(self, network_id: str, entries: Mapping[str, str]) -> list[Peer]:
        out = []
        for ep_id, text in entries.items():
            try:
                out.append(Peer.from_json(ep_id, text))
            except (ValueError, KeyError, TypeError) as e:
                log.error("overlay %s: unreadable peer %s: %s", network_id[:12], ep_id[:12], e)
        return out

    def set_host_peers(self, network_id: str, host: str, peers: Iterable[Peer]) -> None:
        """Make `host`'s entries of the network exactly `peers` (after a restart)."""
        mine = {p.endpoint_id: p for p in peers}
        stale = [p.endpoint_id for p in self.peers(network_id) if p.host == host]
        stale = [i for i in stale if i not in mine]
        pipe = self.store.client.pipeline(transaction=True)
        if stale:
            pipe.hdel(self.key(network_id), *stale)
        if mine:
            pipe.hset(self.key(network_id), mapping={i: p.to_json() for i, p in mine.items()})
        pipe.incr(self.rev_key(network_id))
        pipe.publish(self.channel, network_id)
        pipe.execute()

    def drop_host(self, host: str) -> list[str]:
        """Remove every entry of `host` on every network (`cnm-driver --cleanup`);
        returns the networks that had some."""
        touched = []
        pattern = self.store.key("overlay", "*", "peers")
        for key in self.store.client.scan_iter(match=pattern, count=1000):
            network_id = key.split(":")[-2]
            if any(p.host == host for p in self.peers(network_id)):
                self.set_host_peers(network_id, host, [])
                touched.append(network_id)
        return touched

    def liveness(self, hosts: Iterable[str], me: str = "") -> dict[str, bool]:
        """host -> READY, from the hosts' records on Redis' clock (`me`, this
        host, is read too: its heartbeat anchors the judgement after a Redis
        restart)."""
        ids = sorted(set(hosts))
        if not ids:
            return {}
        read = sorted({*ids, me} - {""})
        pipe = self.store.client.pipeline(transaction=False)
        liveness.queue_clock(pipe, self.store)
        for host in read:
            pipe.hmget(self.store.key("host", host), "last_heartbeat", "ttl")
        replies = pipe.execute()
        rows = replies[liveness.CLOCK_REPLIES :]
        beats = {
            host: (liveness.as_float(last), liveness.as_float(ttl))
            for host, (last, ttl) in zip(read, rows, strict=True)
        }
        live = liveness.judge(beats, liveness.read_clock(replies[: liveness.CLOCK_REPLIES]))
        return {host: live[host] for host in ids}
