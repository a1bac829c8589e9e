"""The `bridge` driver: a Linux bridge per network, a veth per endpoint.

CreateNetwork: the bridge (name from `com.docker.network.bridge.name` or
"br-" + 12 characters of the network id), its MTU (option, else the MTU of
the host's default-route interface, else 1500), its IPv4/IPv6 gateway
addresses, forwarding on, and the network's firewall entries (masquerade,
isolation from other bridges, ICC, internal).

Join: first the host ports of the endpoint's published ports are allocated
(`driver_service.ports`, in Redis, owner = endpoint id), so a taken port is
refused before the kernel is touched; then one RTM_NEWLINK makes the veth
with its peer born inside the sandbox (named eth0, eth1, ... by the manager),
the MAC derived from the IPv4 address as libnetwork does (172.17.0.2 →
02:42:ac:11:00:02) unless given, the addresses, and the default route when
the manager gave it to this endpoint; the bridge port goes into hairpin mode
when the endpoint publishes ports, and each allocated port becomes one
element of the firewall's port maps. Join reports the ports actually chosen.

Leave: the port map elements go (those the record lists and those the
allocator says the endpoint holds), the veth is detached and renamed at once
and deleted in the background (`osl.delete_link_async`), the port leaves the
firewall's sets, the host ports are freed once nothing maps to them, and
conntrack entries of the endpoint's addresses are flushed (in the background,
and at the latest when a Join here uses one of those addresses again).

Every link made here carries the alias `cnm:net:<id>` / `cnm:ep:<id>`: that,
not the name, is how reconciliation and --cleanup recognise cnm's links.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from driver_service import osl
from driver_service.conntrack import ConntrackFlusher
from driver_service.constants import (
    DRIVER_BRIDGE,
    HOST_VETH_PREFIX,
    OPER_BRIDGE,
    OPER_HOST_IFNAME,
    OPER_MAC_ADDRESS,
    OPER_SANDBOX_IFNAME,
)
from driver_service.drivers.bridge import fw, options
from driver_service.drivers.bridge.options import BridgeConfig
from driver_service.drivers.common import (
    check_endpoint_addresses,
    default_routes,
    endpoint_alias,
    endpoint_gateways,
    endpoint_mac,
    host_default_mtu,
    leave_peer_netns,
    network_alias,
    peer_netns,
)
from driver_service.firewall import FirewallState
from driver_service.models import (
    JOINED,
    SCOPE_LOCAL,
    Attachment,
    EndpointRecord,
    EndpointSpec,
    NetworkRecord,
    NetworkSpec,
    PortBinding,
    SandboxRecord,
)
from driver_service.ports import PortAllocator, PortRequest, describe, plan_requests
from driver_service.testhooks import AFTER_PORTS, AFTER_PUBLISH, AFTER_VETH, crash_point
from services.errors import (
    AlreadyExists,
    CnmError,
    FailedPrecondition,
    InvalidArgument,
    MultiError,
    NotFound,
)

log = logging.getLogger(__name__)


def _bare(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip) if cidr else ""


class BridgeDriver:
    name = DRIVER_BRIDGE
    scope = SCOPE_LOCAL
    makes_interface = True

    def __init__(
        self, firewall: fw.BridgeFirewall, conntrack: ConntrackFlusher, ports: PortAllocator
    ) -> None:
        self.firewall = firewall
        self.conntrack = conntrack
        # Host ports of published container ports; owner = endpoint id.
        self.ports = ports

    # --- networks -------------------------------------------------------------------------

    def plan_network(self, spec: NetworkSpec, others: Sequence[NetworkRecord]) -> Mapping[str, str]:
        opts = options.parse(spec.network_id, spec.options)
        if not spec.ipv4 and not spec.ipv6:
            raise InvalidArgument(
                f"bridge network {spec.network_id!r} needs at least one IPAM pool",
                reason="INVALID_IPAM",
            )
        for data in (*spec.ipv4, *spec.ipv6):
            if not data.gateway:
                raise InvalidArgument(
                    f"pool {data.pool} of bridge network {spec.network_id!r} has no gateway",
                    reason="INVALID_IPAM",
                )
        for other in others:
            if other.spec.driver == DRIVER_BRIDGE and other.data.get("bridge") == opts.bridge_name:
                raise AlreadyExists(
                    f"bridge {opts.bridge_name!r} is already used by network {other.id!r}",
                    reason="BRIDGE_IN_USE",
                    metadata={"bridge": opts.bridge_name},
                )
        try:
            link = osl.get_link(opts.bridge_name)
        except NotFound:
            link = None
        if link is not None and link.alias != network_alias(spec.network_id):
            raise AlreadyExists(
                f"a link named {opts.bridge_name!r} already exists on this host "
                "and was not made by cnm for this network",
                reason="LINK_EXISTS",
                metadata={"bridge": opts.bridge_name},
            )
        mtu = opts.mtu if opts.mtu is not None else host_default_mtu()
        return opts.to_data(mtu)

    def _config(self, net: NetworkRecord) -> BridgeConfig:
        return BridgeConfig.from_data(net.data)

    def _rules(self, net: NetworkRecord) -> fw.BridgeNetwork:
        cfg = self._config(net)
        return fw.BridgeNetwork(
            network_id=net.id,
            bridge=cfg.bridge_name,
            subnets=tuple(ipaddress.ip_network(d.pool) for d in (*net.spec.ipv4, *net.spec.ipv6)),
            icc=cfg.enable_icc,
            masquerade=cfg.enable_ip_masquerade,
            internal=net.spec.internal,
        )

    def _ensure_bridge(self, net: NetworkRecord) -> str:
        """The network's bridge, made or brought to its state (gateways, MTU, alias)."""
        cfg = self._config(net)
        osl.create_bridge(
            cfg.bridge_name,
            mtu=cfg.mtu,
            addresses=[d.gateway for d in (*net.spec.ipv4, *net.spec.ipv6) if d.gateway],
            alias=network_alias(net.id),
            exist_ok=True,
        )
        return cfg.bridge_name

    def create_network(self, net: NetworkRecord) -> None:
        cfg = self._config(net)
        existed = osl.link_exists(cfg.bridge_name)
        self._ensure_bridge(net)
        try:
            # The firewall also turns forwarding on for non-internal networks.
            self.firewall.add_network(self._rules(net))
        except BaseException:
            if not existed:
                try:
                    osl.delete_link(cfg.bridge_name)
                except CnmError as e:
                    log.warning("rollback: cannot delete bridge %s: %s", cfg.bridge_name, e)
            raise

    def delete_network(self, net: NetworkRecord) -> None:
        cfg = self._config(net)
        errors: list[Exception] = []
        try:
            self.firewall.remove_network(net.id)
        except CnmError as e:
            errors.append(e)
        try:
            link = osl.get_link(cfg.bridge_name)
        except NotFound:
            link = None
        # plan_network made sure no foreign link had this name, so a bridge without
        # an alias is ours too: a crash hit between its creation and its alias.
        ours = link is not None and (
            link.alias == network_alias(net.id) or (link.kind == "bridge" and not link.alias)
        )
        try:
            if ours:
                osl.delete_link(cfg.bridge_name)
        except CnmError as e:
            errors.append(e)
        if errors:
            raise errors[0] if len(errors) == 1 else MultiError(errors)

    # --- endpoints ------------------------------------------------------------------------

    def plan_endpoint(self, net: NetworkRecord, spec: EndpointSpec) -> str:
        check_endpoint_addresses("bridge", net, spec)
        # Published ports are refused now rather than at Join: nothing is made for them.
        self._port_requests(net, spec)
        return endpoint_mac(spec)

    def gateways(self, net: NetworkRecord, ep: EndpointRecord) -> tuple[str, str]:
        return endpoint_gateways(net, ep.spec)

    def host_ifname(self, ep: EndpointSpec) -> str:
        return f"{HOST_VETH_PREFIX}{ep.endpoint_id[:11]}"

    def join(
        self, net: NetworkRecord, ep: EndpointRecord, sandbox: SandboxRecord, att: Attachment
    ) -> Attachment:
        # Host ports first: a taken port is refused before the kernel is touched.
        requests = self._port_requests(net, ep.spec)
        # Flows of a previous owner of these addresses go before they are used again.
        self.conntrack.settle([_bare(ep.spec.address), _bare(ep.spec.address_ipv6)])
        bindings = self.ports.allocate(ep.id, requests) if requests else ()
        crash_point(AFTER_PORTS)
        try:
            # Hairpin mode: a sandbox reaching its own published port through a host address.
            self._create_veth(net, ep, sandbox, att, hairpin=bool(bindings))
        except BaseException:
            if bindings:
                self._release_quietly(ep.id)
            raise
        crash_point(AFTER_VETH)
        published: list[PortBinding] = []
        try:
            self.firewall.attach_port(net.id, att.host_ifname)
            for binding in bindings:
                self.firewall.add_port_mapping(binding)
                published.append(binding)
            crash_point(AFTER_PUBLISH)
        except BaseException:
            self._undo_join(net, ep, att, sandbox, published)
            raise
        return dataclasses.replace(att, port_bindings=tuple(bindings))

    def _create_veth(
        self,
        net: NetworkRecord,
        ep: EndpointRecord,
        sandbox: SandboxRecord,
        att: Attachment,
        *,
        hairpin: bool,
    ) -> None:
        """The veth of a join: born with its peer in the sandbox, addressed and routed."""
        cfg = self._config(net)
        handoff = sandbox.spec.runtime_moves_interfaces
        # A runtime that moves the interface itself also addresses and routes it.
        routes = [] if handoff else default_routes(att)
        addresses = [] if handoff else [a for a in (ep.spec.address, ep.spec.address_ipv6) if a]
        osl.create_veth(
            att.host_ifname,
            att.ifname,
            peer_netns=peer_netns(sandbox),
            bridge=cfg.bridge_name,
            mtu=cfg.mtu,
            peer_mac=ep.mac or None,
            addresses=addresses,
            routes=routes,
            alias=endpoint_alias(ep.id),
            hairpin=hairpin,
        )

    # --- repair of links deleted behind cnm's back (driver_service/repair.py) -----------

    def bridge_name(self, net: NetworkRecord) -> str:
        return self._config(net).bridge_name

    def repair_bridge(self, net: NetworkRecord, joined: Sequence[EndpointRecord]) -> None:
        """The network's bridge made again (gateways, MTU, alias) and the host ends of
        its `joined` endpoints that still exist plugged back in. The firewall names
        bridges and ports by name, so its rules apply again as they are."""
        bridge = self._ensure_bridge(net)
        for ep in joined:
            att = ep.attachment
            if att is not None and att.host_ifname and osl.link_exists(att.host_ifname):
                _plug_back(att, bridge)

    def repair_veth(
        self, net: NetworkRecord, ep: EndpointRecord, sandbox: SandboxRecord, att: Attachment
    ) -> None:
        """A joined endpoint's veth made again as Join made it. Its host ports and
        their map elements are still in place (they name the container address)."""
        self._create_veth(net, ep, sandbox, att, hairpin=bool(att.port_bindings))
        self.firewall.attach_port(net.id, att.host_ifname)

    def _port_requests(self, net: NetworkRecord, spec: EndpointSpec) -> list[PortRequest]:
        """The host ports the endpoint's bindings need (FAILED_PRECONDITION on an
        internal network, which has no way in from outside)."""
        if not spec.port_bindings:
            return []
        if net.spec.internal:
            raise FailedPrecondition(
                f"network {net.id!r} is internal: ports cannot be published "
                f"({', '.join(describe(pb) for pb in spec.port_bindings)})",
                reason="INTERNAL_NETWORK",
                metadata={"network_id": net.id},
            )
        return plan_requests(
            spec.port_bindings,
            address=spec.address,
            address_ipv6=spec.address_ipv6,
            default_ipv4=self._config(net).host_binding_ipv4,
        )

    def _release_quietly(self, endpoint_id: str) -> None:
        try:
            self.ports.release(endpoint_id)
        except CnmError as e:
            # Not lost: the next start releases ports of endpoints that are not joined.
            log.error("rollback: cannot release the ports of %s: %s", endpoint_id[:12], e)

    def _undo_join(
        self,
        net: NetworkRecord,
        ep: EndpointRecord,
        att: Attachment,
        sandbox: SandboxRecord | None,
        published: Sequence[PortBinding],
    ) -> list[Exception]:
        """Best effort, every step attempted: returns the errors.

        Unpublishes what the record lists AND what the allocator says the endpoint
        holds (a join that stopped half-way published ports its record does not
        list). The ports go back to the pool only when every step worked, so no
        one can be given a host port whose map element still points here.
        """
        errors: list[Exception] = []
        bindings = list(dict.fromkeys(published))
        try:
            bindings += [b for b in self.ports.owned(ep.id) if b not in bindings]
        except CnmError as e:
            errors.append(e)
        steps: list[Callable[[], object]] = [
            partial(self.firewall.remove_port_mapping, b) for b in bindings
        ]
        steps.append(lambda: self.firewall.detach_port(att.host_ifname))
        steps.append(lambda: self._remove_veth(att, sandbox))
        for step in steps:
            try:
                step()
            except CnmError as e:
                log.warning("undo join of %s: %s", att.host_ifname, e)
                errors.append(e)
        if not errors:
            try:
                self.ports.release(ep.id)
            except CnmError as e:
                errors.append(e)
        return errors

    def _remove_veth(self, att: Attachment, sandbox: SandboxRecord | None) -> None:
        # The sandbox end is detached at once so that the sandbox loses its interface
        # now (~17 ms of kernel time here), unless deleting the host end is enough.
        peer_ns = leave_peer_netns(sandbox)
        osl.delete_link_async(
            att.host_ifname,
            peer_name=att.ifname if peer_ns else None,
            peer_netns=peer_ns,
        )

    def leave(
        self,
        net: NetworkRecord,
        ep: EndpointRecord,
        att: Attachment,
        sandbox: SandboxRecord | None,
    ) -> None:
        errors = self._undo_join(net, ep, att, sandbox, att.port_bindings)
        self.conntrack.flush([_bare(ep.spec.address), _bare(ep.spec.address_ipv6)])
        if errors:
            raise errors[0] if len(errors) == 1 else MultiError(errors)

    def oper_info(self, net: NetworkRecord, ep: EndpointRecord) -> Mapping[str, str]:
        info = {OPER_MAC_ADDRESS: ep.mac, OPER_BRIDGE: self._config(net).bridge_name}
        if ep.attachment is not None:
            info[OPER_HOST_IFNAME] = ep.attachment.host_ifname
            info[OPER_SANDBOX_IFNAME] = ep.attachment.ifname
        return info

    def restore(self, nets: Sequence[NetworkRecord], eps: Sequence[EndpointRecord]) -> None:
        """Recreate missing bridges (and plug joined endpoints back into them),
        then make the firewall and the host port allocations match the records."""
        links = {li.name: li for li in osl.list_links()}
        bridge_of = {}
        for net in nets:
            cfg = self._config(net)
            bridge_of[net.id] = cfg.bridge_name
            if cfg.bridge_name not in links:
                log.warning(
                    "bridge %s of network %s is missing: recreating it",
                    cfg.bridge_name,
                    net.id[:12],
                )
            self._ensure_bridge(net)
        for ep in eps:
            att = ep.attachment
            if att is None or not att.host_ifname or ep.network_id not in bridge_of:
                continue
            link = links.get(att.host_ifname)
            if link is None:
                log.error("endpoint %s: its veth %s is gone", ep.id[:12], att.host_ifname)
            elif link.master != bridge_of[ep.network_id]:
                # Its bridge was deleted (and recreated above) behind our back.
                _plug_back(att, bridge_of[ep.network_id])
        self.firewall.load(
            FirewallState(
                networks=tuple(self._rules(n) for n in nets),
                ports=tuple(
                    (ep.attachment.host_ifname, ep.network_id)
                    for ep in eps
                    if ep.attachment is not None and ep.attachment.host_ifname
                ),
                mappings=tuple(
                    b
                    for ep in eps
                    if ep.attachment is not None
                    for b in ep.attachment.port_bindings
                ),
            )
        )
        # Only joined endpoints hold host ports (joins that stopped half-way were
        # undone before this runs); allocations of anything else were leaked by a
        # crash and go back to the pool.
        self.ports.reconcile(
            {
                ep.id: ep.attachment.port_bindings
                for ep in eps
                if ep.attachment is not None and ep.attachment.state == JOINED
            }
        )
        # Flushes queued before a crash were lost with it.
        pools = [d for n in nets for d in (*n.spec.ipv4, *n.spec.ipv6)]
        self.conntrack.sweep(
            [d.pool for d in pools],
            [
                *(_bare(d.gateway) for d in pools),
                *(_bare(a) for d in pools for a in d.aux_addresses.values()),
                *(_bare(a) for ep in eps for a in (ep.spec.address, ep.spec.address_ipv6)),
            ],
        )

    def owned_link_names(
        self, nets: Sequence[NetworkRecord], eps: Sequence[EndpointRecord]
    ) -> set[str]:
        """Names of the host-side links the records account for."""
        names = {self._config(n).bridge_name for n in nets if n.spec.driver == DRIVER_BRIDGE}
        names |= {
            ep.attachment.host_ifname
            for ep in eps
            if ep.attachment is not None and ep.attachment.host_ifname
        }
        return names


def _plug_back(att: Attachment, bridge: str) -> None:
    """A joined endpoint's host end, left detached by its bridge's deletion, plugged in."""
    osl.set_master(att.host_ifname, bridge)
    osl.set_link_state(att.host_ifname, True)
    if att.port_bindings:
        osl.set_hairpin(att.host_ifname, True)
