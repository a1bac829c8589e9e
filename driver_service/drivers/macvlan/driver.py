"""The `macvlan` driver (libnetwork's): containers straight on a host interface's segment.

`-d macvlan -o parent=eth0 -o macvlan_mode=bridge|private|vepa|passthru`.
Each endpoint is a macvlan child of the parent, born directly inside the
sandbox at Join (one RTM_NEWLINK: no host-side link, no bridge, no firewall
rule): it has its own MAC on the parent's segment and the parent's MTU. The
subnet and gateway come from IPAM as for bridge, but the gateway is the
segment's router: nothing is configured on the host for it.

The kernel's rule for macvlan: children cannot talk to their parent's own
stack (frames from a child to the parent's MAC leave on the wire instead),
so the host cannot reach its containers through that interface, nor they it.

Parents:
- an existing host interface: used as is, never changed or removed;
- `parent=eth0.10` that does not exist: an 802.1q sub-interface the driver
  makes (and removes with the network); FAILED_PRECONDITION VLAN_UNSUPPORTED
  when the kernel has no 8021q support;
- no parent, or an `--internal` network: an isolated parent of the network's
  own. Docker makes a `dummy` link in the host's namespace; here it is one end
  of a veth pair (both ends up, so the children have carrier) inside a
  namespace of its own, `<netns_prefix>mv-<host>-<12 hex>`: the containers
  reach each other and nothing else, not even the host's stack through the
  veth's other end. The namespace goes with the network.

Networks may share a host parent in the same mode (bridge, private or
vepa); a different mode, or passthru (the kernel allows a passthru child
alone on its parent), is refused: PARENT_IN_USE. Published ports are
refused: nothing on the host forwards to a macvlan child.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence

from driver_service import osl
from driver_service.constants import (
    DRIVER_MACVLAN,
    OPER_MAC_ADDRESS,
    OPER_PARENT,
    OPER_SANDBOX_IFNAME,
)
from driver_service.drivers.common import (
    check_endpoint_addresses,
    default_routes,
    endpoint_alias,
    endpoint_gateways,
    endpoint_mac,
    network_alias,
    peer_netns,
)
from driver_service.drivers.macvlan import options
from driver_service.drivers.macvlan.options import (
    ISOLATED_PARENT,
    ISOLATED_PEER,
    MADE_ISOLATED,
    MADE_NOTHING,
    MADE_VLAN,
    PASSTHRU,
    SHORT_ID,
    MacvlanConfig,
)
from driver_service.models import (
    DELETING,
    SCOPE_LOCAL,
    Attachment,
    EndpointRecord,
    EndpointSpec,
    NetworkRecord,
    NetworkSpec,
    SandboxRecord,
)
from services.errors import (
    AlreadyExists,
    CnmError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

log = logging.getLogger(__name__)


def _subnets(spec: NetworkSpec) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(d.pool) for d in (*spec.ipv4, *spec.ipv6)]


class MacvlanDriver:
    name = DRIVER_MACVLAN
    scope = SCOPE_LOCAL
    makes_interface = True

    def __init__(self, *, host_id: str, netns_prefix: str) -> None:
        self.host_id = host_id
        self.netns_prefix = netns_prefix

    # --- networks -------------------------------------------------------------------------

    def plan_network(self, spec: NetworkSpec, others: Sequence[NetworkRecord]) -> Mapping[str, str]:
        opts = options.parse(spec.options)
        if not spec.ipv4:
            raise InvalidArgument(
                f"macvlan network {spec.name!r} needs an IPv4 subnet", reason="INVALID_IPAM"
            )
        self._check_no_overlap(spec, others)
        if opts.mode == PASSTHRU and (spec.internal or not opts.parent):
            raise InvalidArgument(
                f"macvlan network {spec.name!r}: macvlan_mode=passthru hands a host "
                "interface to one container and needs -o parent=<host interface> "
                "(and no --internal)",
                reason="PARENT_REQUIRED",
                metadata={"option": "parent"},
            )
        if spec.internal or not opts.parent:
            ns = options.netns_name(self.netns_prefix, self.host_id, spec.network_id)
            return MacvlanConfig(ISOLATED_PARENT, ns, opts.mode, MADE_ISOLATED).to_data()
        self._check_parent_free(spec, opts.parent, opts.mode, others)
        try:
            link = osl.get_link(opts.parent)
        except NotFound:
            link = None
        if link is not None:
            if link.master:
                raise FailedPrecondition(
                    f"parent interface {opts.parent!r} is a port of {link.master!r}: "
                    "it cannot take macvlan children",
                    reason="PARENT_REFUSED",
                    metadata={"parent": opts.parent},
                )
            return MacvlanConfig(opts.parent, "", opts.mode, MADE_NOTHING).to_data()
        vlan = osl.parse_vlan_parent(opts.parent)
        missing = opts.parent if vlan is None else vlan[0]
        if vlan is None or not osl.link_exists(vlan[0]):
            raise NotFound(
                f"the requested parent interface {missing!r} was not found on host {self.host_id!r}",
                reason="PARENT_NOT_FOUND",
                metadata={"parent": missing},
            )
        return MacvlanConfig(opts.parent, "", opts.mode, MADE_VLAN).to_data()

    def _check_no_overlap(self, spec: NetworkSpec, others: Sequence[NetworkRecord]) -> None:
        """Also across address spaces (a global overlay's subnet): a sandbox on both
        would not know where to route."""
        mine = _subnets(spec)
        for other in others:
            for theirs in _subnets(other.spec):
                clash = next(
                    (s for s in mine if s.version == theirs.version and s.overlaps(theirs)), None
                )  # type: ignore[arg-type]
                if clash is not None:
                    raise AlreadyExists(
                        f"subnet {clash} overlaps subnet {theirs} of network "
                        f"{other.spec.name or other.id[:SHORT_ID]!r} on host {self.host_id!r}",
                        reason="POOL_OVERLAP",
                        metadata={"network_id": other.id},
                    )

    def _check_parent_free(
        self, spec: NetworkSpec, parent: str, mode: str, others: Sequence[NetworkRecord]
    ) -> None:
        for other in others:
            if other.spec.driver != DRIVER_MACVLAN or other.data.get("parent_netns", "x"):
                continue
            cfg = MacvlanConfig.from_data(other.data)
            if cfg.parent != parent:
                continue
            if PASSTHRU in (mode, cfg.mode) or mode != cfg.mode or cfg.made == MADE_VLAN:
                why = (
                    "which made it"
                    if cfg.made == MADE_VLAN
                    else f"in {cfg.mode} mode; {mode} mode conflicts"
                )
                raise FailedPrecondition(
                    f"parent interface {parent!r} is already used by macvlan network "
                    f"{other.spec.name or other.id[:SHORT_ID]!r} {why}",
                    reason="PARENT_IN_USE",
                    metadata={"parent": parent, "network_id": other.id},
                )

    def _config(self, net: NetworkRecord) -> MacvlanConfig:
        return MacvlanConfig.from_data(net.data)

    def create_network(self, net: NetworkRecord) -> None:
        cfg = self._config(net)
        if cfg.made == MADE_ISOLATED:
            self._build_isolated(net.id, cfg)
        elif cfg.made == MADE_VLAN and not osl.link_exists(cfg.parent):
            base, vid = osl.parse_vlan_parent(cfg.parent)  # type: ignore[misc]
            osl.create_vlan(cfg.parent, base=base, vlan_id=vid, alias=network_alias(net.id))
        elif cfg.made == MADE_NOTHING and not osl.link_exists(cfg.parent):
            raise NotFound(
                f"the requested parent interface {cfg.parent!r} was not found on host "
                f"{self.host_id!r}",
                reason="PARENT_NOT_FOUND",
                metadata={"parent": cfg.parent},
            )

    def _build_isolated(self, network_id: str, cfg: MacvlanConfig) -> None:
        """The namespace and its veth pair, each only if missing; on failure what
        this call made is removed."""
        made = False
        if not osl.namespace_exists(cfg.parent_netns):
            osl.create_namespace(cfg.parent_netns)
            made = True
        try:
            if not osl.link_exists(ISOLATED_PARENT, netns=cfg.parent_netns):
                osl.create_veth(
                    ISOLATED_PARENT,
                    ISOLATED_PEER,
                    netns=cfg.parent_netns,
                    peer_netns=cfg.parent_netns,
                    alias=network_alias(network_id),
                )
        except BaseException:
            if made:
                try:
                    osl.delete_namespace(cfg.parent_netns)
                except CnmError as e:
                    log.warning("rollback: cannot remove namespace %s: %s", cfg.parent_netns, e)
            raise

    def delete_network(self, net: NetworkRecord) -> None:
        cfg = self._config(net)
        if cfg.made == MADE_ISOLATED:
            # The veth pair goes with it, and any child still hanging off it.
            osl.delete_namespace(cfg.parent_netns)
        elif cfg.made == MADE_VLAN:
            try:
                link = osl.get_link(cfg.parent)
            except NotFound:
                return
            if link.alias == network_alias(net.id) or (link.kind == "vlan" and not link.alias):
                osl.delete_link(cfg.parent)

    # --- endpoints ------------------------------------------------------------------------

    def plan_endpoint(self, net: NetworkRecord, spec: EndpointSpec) -> str:
        check_endpoint_addresses("macvlan", net, spec)
        if spec.port_bindings:
            raise FailedPrecondition(
                f"macvlan network {net.spec.name or net.id!r}: the macvlan driver does not "
                "support port mappings (containers are reached on their own addresses)",
                reason="PORTS_NOT_SUPPORTED",
                metadata={"network_id": net.id},
            )
        cfg = self._config(net)
        if cfg.mode != PASSTHRU:
            return endpoint_mac(spec)
        if spec.mac:
            raise InvalidArgument(
                f"a passthru macvlan endpoint has its parent's MAC address; {spec.mac} "
                "cannot be set",
                reason="INVALID_MAC",
            )
        # The child takes the parent's own MAC (setting another would change the parent's).
        return osl.get_link(cfg.parent, netns=cfg.parent_netns or None).mac or ""

    def gateways(self, net: NetworkRecord, ep: EndpointRecord) -> tuple[str, str]:
        return endpoint_gateways(net, ep.spec)

    def host_ifname(self, ep: EndpointSpec) -> str:
        return ""

    def join(
        self, net: NetworkRecord, ep: EndpointRecord, sandbox: SandboxRecord, att: Attachment
    ) -> Attachment:
        cfg = self._config(net)
        # A runtime that moves the child itself also addresses and routes it.
        handoff = sandbox.spec.runtime_moves_interfaces
        try:
            osl.create_macvlan(
                att.ifname,
                parent=cfg.parent,
                parent_netns=cfg.parent_netns or None,
                mode=cfg.mode,
                netns=peer_netns(sandbox),
                mac=None if cfg.mode == PASSTHRU else (ep.mac or None),
                addresses=[]
                if handoff
                else [a for a in (ep.spec.address, ep.spec.address_ipv6) if a],
                routes=[] if handoff else default_routes(att),
                alias=endpoint_alias(ep.id),
            )
        except FailedPrecondition as e:
            if cfg.mode == PASSTHRU and e.reason == "PARENT_REFUSED":
                raise FailedPrecondition(
                    f"macvlan network {net.spec.name or net.id!r} is in passthru mode: its "
                    f"parent {cfg.parent!r} takes one container only, and has one",
                    reason="PASSTHRU_IN_USE",
                    metadata={"network_id": net.id},
                ) from e
            raise
        return att

    def leave(
        self,
        net: NetworkRecord,
        ep: EndpointRecord,
        att: Attachment,
        sandbox: SandboxRecord | None,
    ) -> None:
        # The child lives only in the sandbox: nothing to do when cnm is about to
        # delete the whole namespace, or when it is already gone.
        if sandbox is None or not att.ifname:
            return
        if sandbox.spec.runtime_moves_interfaces:
            # Given back to the host by the runtime, or gone with its namespace.
            osl.delete_link(att.ifname)
            return
        doomed = sandbox.state == DELETING and bool(sandbox.netns_name)
        if doomed or not osl.is_netns(sandbox.key):
            return
        osl.delete_link(att.ifname, netns=sandbox.key)

    def oper_info(self, net: NetworkRecord, ep: EndpointRecord) -> Mapping[str, str]:
        cfg = self._config(net)
        parent = f"{cfg.parent_netns}/{cfg.parent}" if cfg.parent_netns else cfg.parent
        info = {OPER_MAC_ADDRESS: ep.mac, OPER_PARENT: parent}
        if ep.attachment is not None:
            info[OPER_SANDBOX_IFNAME] = ep.attachment.ifname
        return info

    def restore(self, nets: Sequence[NetworkRecord], eps: Sequence[EndpointRecord]) -> None:
        """Rebuild missing parents the driver makes; remove isolated-parent
        namespaces of this host that no network records."""
        keep = set()
        for net in nets:
            cfg = self._config(net)
            if cfg.made == MADE_ISOLATED:
                keep.add(cfg.parent_netns)
            try:
                self.create_network(net)
            except CnmError as e:
                log.error("macvlan network %s: its parent %s: %s", net.id[:12], cfg.parent, e)
        for name in _namespaces(self.netns_prefix, self.host_id):
            if name not in keep:
                log.warning("removing orphan macvlan parent namespace %s", name)
                osl.delete_namespace(name)


def _namespaces(netns_prefix: str, host_id: str) -> list[str]:
    prefix = options.host_netns_prefix(netns_prefix, host_id)
    names = osl.list_namespaces(prefix)
    hexdigits = set("0123456789abcdef")
    return [
        n for n in names if len(n) == len(prefix) + SHORT_ID and set(n[len(prefix) :]) <= hexdigits
    ]


def cleanup(*, host_id: str, netns_prefix: str) -> list[str]:
    """`cnm-driver --cleanup`: this host's isolated-parent namespaces; the errors."""
    errors = []
    for name in _namespaces(netns_prefix, host_id):
        try:
            osl.delete_namespace(name)
        except CnmError as e:
            errors.append(f"delete macvlan namespace {name}: {e}")
    return errors
