"""The kernel side of one overlay network on one host, all through `osl`.

Each overlay network gets a namespace of its own on every host where it has
endpoints (libnetwork's "overlay sandbox"), holding a bridge (`br0`, with the
network's gateway addresses) and a VXLAN device (`vxlan0`) enslaved to it.
The VXLAN device is created inside that namespace but its UDP socket lives in
the driver service's namespace (the host's), bound to the VTEP address. The
endpoints' veths have their host end on `br0` and their peer in the sandbox.

Why a namespace per network rather than bridges next to the host's own:
isolation between overlays is by construction (no interface of two overlays
shares a namespace, the namespace has no route out and forwarding off), so no
firewall rule is needed and two overlays may even use overlapping subnets on
one host; nothing about an overlay is visible in the host's routing table.

The VXLAN device has learning off and ARP/NDP proxy on: remote peers are
static FDB entries (MAC -> VTEP) and neighbour entries (IP -> MAC) on it, and
ARP requests from the sandboxes are answered by the device itself from those
entries. Nothing is flooded to other hosts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from driver_service import osl
from driver_service.constants import ALIAS_NETWORK, ALIAS_PREFIX
from driver_service.drivers.overlay.options import BRIDGE, VXLAN, OverlayConfig
from driver_service.drivers.overlay.peers import Wanted
from services.errors import CnmError, MultiError

log = logging.getLogger(__name__)


def network_alias(network_id: str) -> str:
    return f"{ALIAS_PREFIX}{ALIAS_NETWORK}:{network_id}"


def exists(cfg: OverlayConfig) -> bool:
    return osl.namespace_exists(cfg.netns) and osl.link_exists(VXLAN, netns=cfg.netns)


def build(cfg: OverlayConfig, network_id: str, gateways: Sequence[str]) -> bool:
    """Namespace, bridge and VXLAN device, each only if missing. Returns True
    when the namespace was made now; on failure what this call made is removed."""
    made = False
    if not osl.namespace_exists(cfg.netns):
        osl.create_namespace(cfg.netns)
        made = True
    try:
        osl.create_bridge(
            BRIDGE,
            netns=cfg.netns,
            mtu=cfg.mtu,
            addresses=gateways,
            alias=network_alias(network_id),
            exist_ok=True,
        )
        if not osl.link_exists(VXLAN, netns=cfg.netns):
            osl.create_vxlan(
                VXLAN,
                vni=cfg.vni,
                local=cfg.vtep,
                dstport=cfg.port,
                mtu=cfg.mtu,
                learning=False,
                proxy=True,
                netns=cfg.netns,
                underlay_netns=None,
                bridge=BRIDGE,
                alias=network_alias(network_id),
            )
    except BaseException:
        if made:
            try:
                teardown(cfg.netns)
            except CnmError as e:
                log.warning("rollback: cannot remove overlay namespace %s: %s", cfg.netns, e)
        raise
    return made


def teardown(netns: str) -> bool:
    """Remove the network's namespace. Idempotent: False when it was already gone.

    The VXLAN device is deleted first, synchronously: the kernel frees a
    namespace's devices only later, and until then a new device with the same
    VNI (a join right after the last leave) would be refused.
    """
    if not osl.namespace_exists(netns):
        return osl.delete_namespace(netns)
    errors: list[Exception] = []
    for name in (VXLAN, BRIDGE):
        try:
            osl.delete_link(name, netns=netns)
        except CnmError as e:
            errors.append(e)
    try:
        osl.delete_namespace(netns)
    except CnmError as e:
        errors.append(e)
    if errors:
        raise errors[0] if len(errors) == 1 else MultiError(errors)
    return True


def endpoint_ports(netns: str) -> list[str]:
    """Veths still plugged into the bridge (tombstones of left endpoints excluded).
    Every Leave asks: by the lean dump, whose cost does not grow with pyroute2's
    decoding of every endpoint's veth."""
    return sorted(osl.link_names(netns=netns, master=BRIDGE, kind="veth"))


def programmed(netns: str) -> Wanted:
    """The static entries the VXLAN device carries now."""
    fdb = {(e.mac, str(e.dst)) for e in osl.list_fdb(VXLAN, netns=netns) if e.dst is not None}
    neigh = {
        (str(n.ip), n.mac)
        for n in osl.list_neighbours(netns=netns, ifname=VXLAN)
        if "permanent" in n.state and n.mac
    }
    return Wanted(fdb=frozenset(fdb), neighbours=frozenset(neigh))


def program(netns: str, wanted: Wanted, *, keep_unknown: bool = False) -> tuple[int, int]:
    """Make the VXLAN device's static entries exactly `wanted`; returns (added, removed).

    Stale entries go first, so a MAC that moved to another VTEP never has two.
    With `keep_unknown` (the store's view may be incomplete), entries for MACs
    and IPs `wanted` does not mention are kept: only moves and additions.
    """
    have = programmed(netns)
    removed = added = 0
    wanted_macs = {mac for mac, _dst in wanted.fdb}
    for mac, dst in have.fdb - wanted.fdb:
        if keep_unknown and mac not in wanted_macs:
            continue
        osl.delete_fdb(VXLAN, mac, dst, netns=netns)
        removed += 1
    wanted_ips = {ip for ip, _mac in wanted.neighbours}
    for ip, _mac in have.neighbours - wanted.neighbours:
        if ip not in wanted_ips and not keep_unknown:
            osl.delete_neighbour(VXLAN, ip, netns=netns)
            removed += 1
    for mac, dst in wanted.fdb - have.fdb:
        osl.add_fdb(VXLAN, mac, dst, netns=netns)
        added += 1
    for ip, mac in wanted.neighbours - have.neighbours:
        osl.add_neighbour(VXLAN, ip, mac, netns=netns)
        added += 1
    return added, removed
