"""Helpers shared by the drivers that plumb links into sandboxes (bridge, overlay, macvlan).

Kept apart from any one driver so that no driver imports another.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Sequence

from driver_service import osl
from driver_service.constants import ALIAS_ENDPOINT, ALIAS_NETWORK, ALIAS_PREFIX
from driver_service.models import DELETING, Attachment, EndpointSpec, NetworkRecord, SandboxRecord
from driver_service.osl import validate
from services.errors import CnmError, InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_MTU = 1500


def network_alias(network_id: str) -> str:
    return f"{ALIAS_PREFIX}{ALIAS_NETWORK}:{network_id}"


def endpoint_alias(endpoint_id: str) -> str:
    return f"{ALIAS_PREFIX}{ALIAS_ENDPOINT}:{endpoint_id}"


def mac_from_ipv4(address: str) -> str:
    """libnetwork's generated MAC: 02:42 followed by the four bytes of the IPv4 address."""
    ip = ipaddress.IPv4Interface(address).ip
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def netns_host_tag(netns_prefix: str, kind: str, host_id: str, tail: int) -> str:
    """The part of a driver's per-network namespace name
    (`<netns_prefix><kind><host tag>-<tail chars>`) that says which host made it.

    Several hosts may share one machine's /run/netns (the test cluster), so
    the host is in the name. A host id too long for the 128-character limit
    is replaced by a digest of it.
    """
    if len(netns_prefix) + len(kind) + len(host_id) + 1 + tail <= validate.NETNS_NAME_MAX:
        return host_id
    return "x" + hashlib.sha256(host_id.encode()).hexdigest()[:15]


def endpoint_gateways(net: NetworkRecord, spec: EndpointSpec) -> tuple[str, str]:
    """(IPv4, IPv6) gateways of the pools holding the endpoint's addresses
    (bare addresses, "" for none); none at all on an internal network."""
    if net.spec.internal:
        return ("", "")
    out = []
    for addr, pools in ((spec.address, net.spec.ipv4), (spec.address_ipv6, net.spec.ipv6)):
        data = pool_of(addr, pools) if addr else None
        gateway = data.gateway if data is not None else ""
        out.append(str(ipaddress.ip_interface(gateway).ip) if gateway else "")
    return (out[0], out[1])


def default_routes(att: Attachment) -> list[osl.Route]:
    """The default routes a join installs: through its gateways, when the
    manager gave this endpoint the sandbox's default route."""
    if not att.default_route:
        return []
    routes = []
    if att.gateway:
        routes.append(osl.Route("0.0.0.0/0", gateway=att.gateway))
    if att.gateway_ipv6:
        routes.append(osl.Route("::/0", gateway=att.gateway_ipv6))
    return routes


def host_default_mtu() -> int:
    """MTU of the interface carrying this namespace's IPv4 default route; 1500 without one."""
    try:
        for route in osl.list_routes():
            if route.dst.prefixlen == 0 and route.dst.version == 4 and route.ifname:
                return osl.get_link(route.ifname).mtu
    except CnmError as e:
        log.warning("cannot read the default route's MTU (%s); using %d", e, DEFAULT_MTU)
    return DEFAULT_MTU


def pool_of(address: str, pools: Sequence):  # noqa: ANN201 - IpamData of either family
    """The pool (IpamData) of `pools` whose subnet holds `address` (CIDR or bare), or None."""
    ip = ipaddress.ip_interface(address).ip
    return next((d for d in pools if ip in ipaddress.ip_network(d.pool)), None)


def check_endpoint_addresses(kind: str, net: NetworkRecord, spec: EndpointSpec) -> None:
    """An endpoint of a `kind` network needs an address inside one of its subnets,
    and not the gateway's. Checked before anything is made."""
    if not spec.address and not spec.address_ipv6:
        raise InvalidArgument(
            f"endpoint {spec.endpoint_id!r} on {kind} network {net.id!r} has no address",
            reason="INVALID_ADDRESS",
        )
    for addr, pools, version in (
        (spec.address, net.spec.ipv4, 4),
        (spec.address_ipv6, net.spec.ipv6, 6),
    ):
        if not addr:
            continue
        pool = pool_of(addr, pools)
        if pool is None:
            raise InvalidArgument(
                f"address {addr} of endpoint {spec.endpoint_id!r} is not inside an "
                f"IPv{version} subnet of network {net.id!r}",
                reason="ADDRESS_OUTSIDE_POOL",
            )
        if (
            pool.gateway
            and ipaddress.ip_interface(pool.gateway).ip == ipaddress.ip_interface(addr).ip
        ):
            raise InvalidArgument(
                f"address {addr} of endpoint {spec.endpoint_id!r} is the network's gateway",
                reason="ADDRESS_IS_GATEWAY",
            )


def endpoint_mac(spec: EndpointSpec) -> str:
    """The MAC given, else derived from the IPv4 address (unique as the address is), else random."""
    if spec.mac:
        return spec.mac
    return mac_from_ipv4(spec.address) if spec.address else osl.random_mac()


def peer_netns(sandbox: SandboxRecord) -> str | None:
    """Where Join makes the container end of a veth: inside the sandbox, or in
    the host namespace (None) when the runtime moves interfaces itself (Docker),
    in which case the driver gives it no address or route either."""
    return None if sandbox.spec.runtime_moves_interfaces else sandbox.key


def leave_peer_netns(sandbox: SandboxRecord | None) -> str | None:
    """The namespace whose container end Leave detaches at once, or None: the
    sandbox is gone, cnm is about to delete its whole namespace anyway, or the
    runtime moved the interface (deleting the host end takes it along)."""
    if sandbox is None or sandbox.spec.runtime_moves_interfaces:
        return None
    if sandbox.state == DELETING and sandbox.netns_name:
        return None
    return sandbox.key if osl.is_netns(sandbox.key) else None
