"""The `overlay` driver: one L2 network across hosts, over VXLAN (global scope).

The controller creates an overlay network once (its subnet from the
GlobalDefault address space, its VNI from IPAM's id allocator, passed in the
option `com.docker.network.driver.overlay.vxlanid_list`) and tells each host
about it before the first endpoint there. On a host:

- CreateNetwork only validates and records (VNI, UDP port, MTU = underlay MTU
  - 50, this host's VTEP, the namespace name): nothing exists in the kernel
  until an endpoint joins here;
- the first Join builds the network's namespace, bridge and VXLAN device
  (fabric.py) and programs every remote peer; each Join adds a veth (host
  end on the bridge, peer in the sandbox) and records the endpoint as a peer
  in Redis, which tells every other host (peers.py, watch.py);
- Leave removes the peer and the veth; the last Leave on this host removes
  the namespace with the bridge and VXLAN device.

Endpoints get no gateway: like libnetwork's overlay, this network carries
east-west traffic only; a sandbox reaches outside through another network.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from driver_service import osl
from driver_service.constants import (
    DRIVER_OVERLAY,
    HOST_VETH_PREFIX,
    OPER_BRIDGE,
    OPER_HOST_IFNAME,
    OPER_MAC_ADDRESS,
    OPER_SANDBOX_IFNAME,
)
from driver_service.drivers.common import (
    check_endpoint_addresses,
    endpoint_alias,
    endpoint_mac,
    host_default_mtu,
    leave_peer_netns,
    peer_netns,
)
from driver_service.drivers.overlay import fabric, options
from driver_service.drivers.overlay.options import BRIDGE, OverlayConfig
from driver_service.drivers.overlay.peers import Peer, PeerTable, Wanted, wanted
from driver_service.drivers.overlay.watch import PeerWatcher
from driver_service.models import (
    JOINED,
    SCOPE_GLOBAL,
    Attachment,
    EndpointRecord,
    EndpointSpec,
    NetworkRecord,
    NetworkSpec,
    SandboxRecord,
)
from services.errors import AlreadyExists, CnmError, FailedPrecondition, InvalidArgument, MultiError
from services.store import Store

log = logging.getLogger(__name__)

OPER_VNI = "com.docker.network.driver.overlay.vxlanid_list"
# Longest a Join waits for the other live hosts to program its new peer (then
# it returns all the same: their next sync catches up).
ANNOUNCE_WAIT = 2.0
OPER_NETNS = "com.cnm.overlay.netns"


def _bare(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip) if cidr else ""


def underlay_mtu(vtep: str) -> int:
    """MTU of the interface carrying the VTEP address (else the default route's)."""
    try:
        for addr in osl.list_addresses():
            if str(addr.address.ip) == vtep:
                return osl.get_link(addr.ifname).mtu
    except CnmError as e:
        log.warning("cannot find the interface of VTEP %s: %s", vtep, e)
    return host_default_mtu()


class OverlayDriver:
    name = DRIVER_OVERLAY
    scope = SCOPE_GLOBAL
    makes_interface = True

    def __init__(
        self,
        store: Store,
        *,
        host_id: str,
        advertise_addr: str,
        netns_prefix: str,
        sandbox_of: Callable[[str], SandboxRecord | None],
        endpoints_of: Callable[[str], Sequence[EndpointRecord]] = lambda _net: (),
        settling: Callable[[], bool] = lambda: False,
        settle: float = 10.0,
        tick: float = 2.0,
        resync_interval: float = 15.0,
    ) -> None:
        self.host_id = host_id
        self.vtep = advertise_addr
        self.netns_prefix = netns_prefix
        self.sandbox_of = sandbox_of
        # This host's endpoints of a network (its own records), and whether the
        # store just lost its data and others may still be re-announcing theirs.
        self.endpoints_of = endpoints_of
        self.settling = settling
        self.settle = settle
        # When this host last found its own peers missing from the store.
        self._incomplete_at = float("-inf")
        self.peers = PeerTable(store)
        # Reported with the capability: the controller will not use a host without a VTEP.
        self.error = (
            ""
            if advertise_addr
            else "no VTEP address: start the driver service with --advertise-addr"
        )
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        # Networks built on this host (namespace present), and what was last programmed.
        self._local: dict[str, NetworkRecord] = {}
        self._programmed: dict[str, Wanted] = {}
        # The peers' rev this host last told the others it carries.
        self._acked: dict[str, int] = {}
        self.watcher = PeerWatcher(
            store,
            self.peers.channel,
            on_change=self._on_change,
            on_tick=self._on_tick,
            tick=tick,
            full_every=resync_interval,
        )

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start following peer changes (after the start-up restore)."""
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()

    @contextmanager
    def _lock(self, network_id: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(network_id, threading.Lock())
        with lock:
            yield

    def _config(self, net: NetworkRecord) -> OverlayConfig:
        return OverlayConfig.from_data(net.data)

    # --- networks -------------------------------------------------------------------------

    def plan_network(self, spec: NetworkSpec, others: Sequence[NetworkRecord]) -> Mapping[str, str]:
        opts = options.parse(spec.network_id, spec.options)
        if not self.vtep:
            raise FailedPrecondition(
                f"host {self.host_id!r} cannot carry overlay network {spec.network_id!r}: "
                "its driver service has no --advertise-addr (the VTEP address)",
                reason="NO_ADVERTISE_ADDRESS",
            )
        if not spec.ipv4 and not spec.ipv6:
            raise InvalidArgument(
                f"overlay network {spec.network_id!r} needs at least one IPAM pool",
                reason="INVALID_IPAM",
            )
        for other in others:
            if other.spec.driver != DRIVER_OVERLAY:
                continue
            theirs = self._config(other)
            if theirs.vni == opts.vni:
                raise AlreadyExists(
                    f"VNI {opts.vni} is already used by overlay network {other.id!r} on this host",
                    reason="VNI_IN_USE",
                    metadata={"vni": str(opts.vni)},
                )
        mtu = opts.mtu if opts.mtu is not None else underlay_mtu(self.vtep) - options.VXLAN_OVERHEAD
        return OverlayConfig(
            vni=opts.vni,
            port=opts.port,
            mtu=osl.validate.mtu(mtu),
            vtep=self.vtep,
            netns=options.netns_name(self.netns_prefix, self.host_id, spec.network_id),
        ).to_data()

    def create_network(self, net: NetworkRecord) -> None:
        # Nothing in the kernel yet: the first Join on this host builds it.
        self.peers.set_vni(self.host_id, self._config(net).vni, net.id)

    def delete_network(self, net: NetworkRecord) -> None:
        cfg = self._config(net)
        with self._lock(net.id):
            self._forget(net.id)
            fabric.teardown(cfg.netns)
            self.peers.set_vni(self.host_id, cfg.vni, None)

    def _remember(self, net: NetworkRecord) -> None:
        with self._guard:
            self._local[net.id] = net
            self._programmed.pop(net.id, None)

    def _forget(self, network_id: str) -> None:
        with self._guard:
            self._local.pop(network_id, None)
            self._programmed.pop(network_id, None)
            acked = self._acked.pop(network_id, None)
        if acked is not None:
            try:
                self.peers.ack(network_id, self.host_id, None)
            except CnmError as e:  # a stale entry only makes Joins elsewhere wait
                log.warning("overlay %s: cannot withdraw this host's ack: %s", network_id[:12], e)

    # --- endpoints ------------------------------------------------------------------------

    def plan_endpoint(self, net: NetworkRecord, spec: EndpointSpec) -> str:
        check_endpoint_addresses("overlay", net, spec)
        # The derived MAC is unique across hosts because the address is (one IPAM pool).
        return endpoint_mac(spec)

    def gateways(self, net: NetworkRecord, ep: EndpointRecord) -> tuple[str, str]:
        return ("", "")

    def host_ifname(self, ep: EndpointSpec) -> str:
        # Inside the overlay's own namespace: never clashes with the host's links.
        return f"{HOST_VETH_PREFIX}{ep.endpoint_id[:11]}"

    def _peer(self, ep: EndpointRecord, cfg: OverlayConfig) -> Peer:
        return Peer(
            endpoint_id=ep.id,
            host=self.host_id,
            vtep=cfg.vtep,
            mac=ep.mac,
            ip=_bare(ep.spec.address),
            ipv6=_bare(ep.spec.address_ipv6),
        )

    def _gateways_of(self, net: NetworkRecord) -> list[str]:
        return [d.gateway for d in (*net.spec.ipv4, *net.spec.ipv6) if d.gateway]

    def _ensure_built(self, net: NetworkRecord, cfg: OverlayConfig) -> None:
        """The namespace, bridge and VXLAN device, with every remote peer programmed."""
        if net.id in self._local and fabric.exists(cfg):
            return
        made = fabric.build(cfg, net.id, self._gateways_of(net))
        try:
            self._remember(net)
            self._sync_locked(net.id, full=True)
        except BaseException:
            self._forget(net.id)
            if made:
                self._teardown_quietly(cfg)
            raise
        log.info("overlay %s: built on this host (vni %d, mtu %d)", net.id[:12], cfg.vni, cfg.mtu)

    def _teardown_quietly(self, cfg: OverlayConfig) -> None:
        try:
            fabric.teardown(cfg.netns)
        except CnmError as e:
            log.warning("rollback: cannot remove overlay namespace %s: %s", cfg.netns, e)

    def _plug(
        self, cfg: OverlayConfig, ep: EndpointRecord, sandbox: SandboxRecord, att: Attachment
    ) -> None:
        osl.create_veth(
            att.host_ifname,
            att.ifname,
            netns=cfg.netns,
            peer_netns=peer_netns(sandbox),
            bridge=BRIDGE,
            mtu=cfg.mtu,
            peer_mac=ep.mac or None,
            addresses=[]
            if sandbox.spec.runtime_moves_interfaces
            else [a for a in (ep.spec.address, ep.spec.address_ipv6) if a],
            alias=endpoint_alias(ep.id),
        )

    def join(
        self, net: NetworkRecord, ep: EndpointRecord, sandbox: SandboxRecord, att: Attachment
    ) -> Attachment:
        cfg = self._config(net)
        with self._lock(net.id):
            self._ensure_built(net, cfg)
            try:
                self._plug(cfg, ep, sandbox, att)
                rev = self.peers.put(net.id, self._peer(ep, cfg))
            except BaseException:
                self._unplug(net, cfg, ep, att, sandbox)
                raise
        self._await_announced(net.id, rev)
        return att

    def _await_announced(self, network_id: str, rev: int) -> None:
        """Wait (bounded) until every live host with this network carries the
        new peer: a first packet from there then finds its neighbour entry
        instead of waiting a second for ARP. Never fails the Join."""
        deadline = time.monotonic() + ANNOUNCE_WAIT
        late: list[str] = []
        try:
            while late := self.peers.behind(network_id, self.host_id, rev):
                if time.monotonic() > deadline:
                    log.warning(
                        "overlay %s: hosts %s did not program the new peer within %.0fs",
                        network_id[:12],
                        ", ".join(late),
                        ANNOUNCE_WAIT,
                    )
                    return
                time.sleep(0.005)
        except CnmError as e:
            log.warning("overlay %s: cannot tell whether hosts have the new peer: %s",
                        network_id[:12], e)  # fmt: skip

    def _unplug(
        self,
        net: NetworkRecord,
        cfg: OverlayConfig,
        ep: EndpointRecord,
        att: Attachment,
        sandbox: SandboxRecord | None,
    ) -> list[Exception]:
        """Peer entry, veth, and the whole network when this was its last local
        endpoint. Every step is attempted; returns the errors."""
        errors: list[Exception] = []
        try:
            self.peers.remove(net.id, [ep.id])
        except CnmError as e:
            errors.append(e)
        if not osl.namespace_exists(cfg.netns):
            # The veth went with the namespace; nothing of it is left in the sandbox.
            self._forget(net.id)
            return errors
        # As the bridge driver: the sandbox end is detached at once if need be.
        peer_ns = leave_peer_netns(sandbox)
        try:
            osl.delete_link_async(
                att.host_ifname,
                netns=cfg.netns,
                peer_name=att.ifname if peer_ns and att.ifname else None,
                peer_netns=peer_ns,
            )
            if not fabric.endpoint_ports(cfg.netns):
                self._forget(net.id)
                fabric.teardown(cfg.netns)
                log.info("overlay %s: last local endpoint left; removed", net.id[:12])
        except CnmError as e:
            errors.append(e)
        return errors

    def leave(
        self,
        net: NetworkRecord,
        ep: EndpointRecord,
        att: Attachment,
        sandbox: SandboxRecord | None,
    ) -> None:
        with self._lock(net.id):
            errors = self._unplug(net, self._config(net), ep, att, sandbox)
        if errors:
            raise errors[0] if len(errors) == 1 else MultiError(errors)

    def oper_info(self, net: NetworkRecord, ep: EndpointRecord) -> Mapping[str, str]:
        cfg = self._config(net)
        info = {
            OPER_MAC_ADDRESS: ep.mac,
            OPER_BRIDGE: BRIDGE,
            OPER_VNI: str(cfg.vni),
            OPER_NETNS: cfg.netns,
        }
        if ep.attachment is not None:
            info[OPER_HOST_IFNAME] = ep.attachment.host_ifname
            info[OPER_SANDBOX_IFNAME] = ep.attachment.ifname
        return info

    # --- peers ----------------------------------------------------------------------------

    def _sync_locked(self, network_id: str, *, full: bool) -> None:
        net = self._local.get(network_id)
        if net is None:
            return
        cfg = self._config(net)
        rev, peers = self.peers.snapshot(network_id)
        if self._reannounce_missing(net, cfg, peers):
            self._incomplete_at = time.monotonic()
        incomplete = time.monotonic() - self._incomplete_at < self.settle
        live = self.peers.liveness(
            (p.host for p in peers if p.host != self.host_id), me=self.host_id
        )
        want = wanted(peers, live, self.host_id, self.vtep)
        # A store that lost (some of) its data must not make this host drop
        # entries that carry working traffic: only add until it is whole again.
        keep = incomplete or self.settling()
        if full or keep or self._programmed.get(network_id) != want:
            added, removed = fabric.program(cfg.netns, want, keep_unknown=keep)
            self._programmed[network_id] = want
        else:
            added = removed = 0
        if self._acked.get(network_id) != rev:
            self.peers.ack(network_id, self.host_id, rev)
            self._acked[network_id] = rev
        if added or removed:
            log.info(
                "overlay %s: %d peer entries added, %d removed", network_id[:12], added, removed
            )

    def _reannounce_missing(
        self, net: NetworkRecord, cfg: OverlayConfig, peers: list[Peer]
    ) -> bool:
        """Put back this host's joined endpoints the store does not list (it
        lost them); True when some were missing."""
        listed = {p.endpoint_id for p in peers}
        missing = [
            self._peer(ep, cfg)
            for ep in self.endpoints_of(net.id)
            if ep.attachment is not None and ep.attachment.state == JOINED and ep.id not in listed
        ]
        if not missing:
            return False
        log.warning(
            "overlay %s: the store lost %d of this host's peers; announcing them again",
            net.id[:12],
            len(missing),
        )
        self.peers.announce(net.id, missing)
        self.peers.set_vni(self.host_id, cfg.vni, net.id)
        return True

    def announce_vnis(self, nets: Sequence[NetworkRecord]) -> None:
        """Make this host's VNI records match its overlay networks (at start,
        and after the store lost its data)."""
        vnis = {self._config(n).vni: n.id for n in nets if n.spec.driver == DRIVER_OVERLAY}
        self.peers.set_vnis(self.host_id, vnis)

    def sync(self, network_id: str, *, full: bool = False) -> None:
        """Bring the network's static entries up to date (no-op when not built here)."""
        with self._lock(network_id):
            self._sync_locked(network_id, full=full)

    def _local_ids(self) -> set[str]:
        with self._guard:
            return set(self._local)

    def _on_change(self, network_ids: set[str]) -> None:
        errors = []
        for network_id in sorted(network_ids & self._local_ids()):
            try:
                self.sync(network_id)
            except CnmError as e:
                errors.append(e)
        if errors:
            raise errors[0] if len(errors) == 1 else MultiError(errors)

    def _on_tick(self, full: bool) -> None:
        errors = []
        for network_id in sorted(self._local_ids()):
            try:
                self.sync(network_id, full=full)
            except CnmError as e:
                errors.append(e)
        if errors:
            raise errors[0] if len(errors) == 1 else MultiError(errors)

    # --- restart --------------------------------------------------------------------------

    def restore(self, nets: Sequence[NetworkRecord], eps: Sequence[EndpointRecord]) -> None:
        """After a restart: rebuild what the records say is joined here (namespace,
        bridge, VXLAN device, missing veths into live sandboxes), re-announce
        this host's peers, remove overlay namespaces of this host no record
        needs, and program every remote peer."""
        joined: dict[str, list[EndpointRecord]] = {}
        for ep in eps:
            if ep.attachment is not None and ep.attachment.state == JOINED:
                joined.setdefault(ep.network_id, []).append(ep)
        errors: list[Exception] = []
        keep = set()
        for net in nets:
            cfg = self._config(net)
            mine = joined.get(net.id, [])
            try:
                with self._lock(net.id):
                    if mine:
                        keep.add(cfg.netns)
                        self._restore_network(net, cfg, mine)
                    else:
                        self._forget(net.id)
                        fabric.teardown(cfg.netns)
                        self.peers.set_host_peers(net.id, self.host_id, [])
            except CnmError as e:
                log.error("overlay %s: restore failed: %s", net.id[:12], e)
                errors.append(e)
        errors += self._remove_orphan_namespaces(keep)
        try:
            self.announce_vnis(nets)
        except CnmError as e:
            errors.append(e)
        if errors:
            raise errors[0] if len(errors) == 1 else MultiError(errors)

    def _restore_network(
        self, net: NetworkRecord, cfg: OverlayConfig, eps: Sequence[EndpointRecord]
    ) -> None:
        if cfg.vtep != self.vtep:
            log.warning(
                "overlay %s: recorded VTEP %s, now %s; peers keep the recorded one",
                net.id[:12],
                cfg.vtep,
                self.vtep,
            )
        fabric.build(cfg, net.id, self._gateways_of(net))
        self._remember(net)
        links = {li.name: li for li in osl.list_links(netns=cfg.netns)}
        for ep in eps:
            att = ep.attachment
            assert att is not None
            link = links.get(att.host_ifname)
            if link is not None:
                if link.master != BRIDGE:
                    osl.set_master(att.host_ifname, BRIDGE, netns=cfg.netns)
                    osl.set_link_state(att.host_ifname, True, netns=cfg.netns)
                continue
            sandbox = self.sandbox_of(att.sandbox_id)
            if sandbox is None or not osl.is_netns(sandbox.key):
                log.error("endpoint %s: its sandbox is gone; not re-plugged", ep.id[:12])
                continue
            log.warning("endpoint %s: its veth was lost; plugging it again", ep.id[:12])
            # A half-lost pair may have left the sandbox end behind.
            osl.delete_link(att.ifname, netns=sandbox.key)
            self._plug(cfg, ep, sandbox, att)
        self.peers.set_host_peers(net.id, self.host_id, [self._peer(ep, cfg) for ep in eps])
        self._sync_locked(net.id, full=True)

    def _remove_orphan_namespaces(self, keep: set[str]) -> list[Exception]:
        prefix = options.host_netns_prefix(self.netns_prefix, self.host_id)
        errors: list[Exception] = []
        for name in osl.list_namespaces(prefix):
            rest = name[len(prefix) :]
            if name in keep or len(rest) != options.SHORT_ID or not _is_hex(rest):
                continue
            log.warning("removing orphan overlay namespace %s", name)
            try:
                fabric.teardown(name)
            except CnmError as e:
                errors.append(e)
        return errors


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def cleanup(store: Store | None, *, host_id: str, netns_prefix: str) -> list[str]:
    """`cnm-driver --cleanup`: this host's overlay namespaces and peer entries; the errors."""
    errors: list[str] = []
    prefix = options.host_netns_prefix(netns_prefix, host_id)
    for name in osl.list_namespaces(prefix):
        rest = name[len(prefix) :]
        if len(rest) != options.SHORT_ID or not _is_hex(rest):
            continue
        try:
            fabric.teardown(name)
        except CnmError as e:
            errors.append(f"delete overlay namespace {name}: {e}")
    if store is not None:
        try:
            PeerTable(store).drop_host(host_id)
        except CnmError as e:
            errors.append(f"remove this host's overlay peers: {e}")
    return errors
