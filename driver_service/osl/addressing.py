"""Addresses, routes, neighbour and FDB entries on interfaces of a namespace.

Adds are idempotent (`replace` semantics: repeating one is a no-op), deletes
are idempotent (already gone = success, returns False). Every value is
validated before a socket is opened.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from typing import NoReturn

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_NODAD

from services.errors import InvalidArgument, NotFound
from services.values import cidr

from . import sysctl, validate
from .nsenter import NetnsRef
from .rtnl import GONE, kernel_errors, rtnl, to_domain_error
from .types import Route
from .validate import IPAddress, IPInterface, IPNetwork

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTPROT_STATIC = 4


def link_index(ipr: IPRoute, name: str, netns: NetnsRef) -> int:
    """Index of interface `name` (NotFound when missing). O(1): RTM_GETLINK by name."""
    found = ipr.link_lookup(ifname=name)
    if not found:
        where = f" in network namespace {netns!r}" if netns else ""
        raise NotFound(
            f"interface {name!r} does not exist{where}",
            reason="LINK_NOT_FOUND",
            metadata={"ifname": name},
        )
    return found[0]


def find_index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def add_address_on(
    ipr: IPRoute, index: int, ifname: str, iface: IPInterface, netns: NetnsRef
) -> None:
    """Add (replace) one address. IPv6 addresses skip DAD: usable at once."""
    kwargs: dict[str, object] = {
        "index": index,
        "address": str(iface.ip),
        "prefixlen": iface.network.prefixlen,
    }
    if iface.version == 6:
        kwargs["flags"] = IFA_F_NODAD
    elif iface.network.prefixlen < 31:
        kwargs["broadcast"] = str(iface.network.broadcast_address)
    action = f"add address {iface} to {ifname!r}"
    try:
        ipr.addr("replace", **kwargs)
    except NetlinkError as e:
        if iface.version != 6 or e.code != errno.EACCES:
            raise
        # IPv6 is disabled on this interface (a host or namespace default): enable it.
        sysctl.set_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", 0, netns=netns)
        with kernel_errors(action, address=iface):
            ipr.addr("replace", **kwargs)


def route_kwargs(route: Route, oif: int | None) -> dict[str, object]:
    dst = cidr.network(route.dst, what="route destination")
    kwargs: dict[str, object] = {
        "family": socket.AF_INET if dst.version == 4 else socket.AF_INET6,
        "dst_len": dst.prefixlen,
        "proto": RTPROT_STATIC,
    }
    if dst.prefixlen:
        kwargs["dst"] = str(dst.network_address)
    if route.gateway is not None:
        gw = validate.ip_address(route.gateway, "gateway")
        if gw.version != dst.version:
            raise InvalidArgument(f"gateway {gw} is not of the same family as {dst}")
        kwargs["gateway"] = str(gw)
    if route.metric is not None:
        if (
            isinstance(route.metric, bool)
            or not isinstance(route.metric, int)
            or not 0 <= route.metric < 2**32
        ):
            raise InvalidArgument(f"invalid route metric {route.metric!r}")
        kwargs["priority"] = route.metric
    if oif is not None:
        kwargs["oif"] = oif
    return kwargs


def check_route(route: Route) -> None:
    route_kwargs(route, None)


def add_route_on(ipr: IPRoute, route: Route, oif: int | None, ifname: str | None) -> None:
    kwargs = route_kwargs(route, oif)
    via = f" via {route.gateway}" if route.gateway else ""
    dev = f" dev {ifname}" if ifname else ""
    with kernel_errors(f"add route {route.dst}{via}{dev}", dst=route.dst, gateway=route.gateway):
        ipr.route("replace", **kwargs)


# --- public API ------------------------------------------------------------------------------


def add_addresses(
    ifname: str, addresses: Iterable[str | IPInterface], *, netns: NetnsRef = None
) -> None:
    """Put `addresses` (with prefix, e.g. '10.0.0.2/24') on `ifname`. Idempotent."""
    ifname = validate.ifname(ifname)
    ifaces = [validate.ip_interface(a) for a in addresses]
    with rtnl(netns) as ipr:
        index = link_index(ipr, ifname, netns)
        for iface in ifaces:
            with kernel_errors(f"add address {iface} to {ifname!r}", address=iface):
                add_address_on(ipr, index, ifname, iface, netns)


def delete_address(ifname: str, address: str | IPInterface, *, netns: NetnsRef = None) -> bool:
    """Remove one address from `ifname`. Idempotent: False when address or link is gone."""
    ifname = validate.ifname(ifname)
    iface = validate.ip_interface(address)
    with rtnl(netns) as ipr:
        index = find_index(ipr, ifname)
        if index is None:
            return False
        try:
            ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except NetlinkError as e:
            if e.code in GONE:
                return False
            raise_kernel(e, f"delete address {iface} from {ifname!r}")
    return True


def add_route(
    dst: str | IPNetwork,
    *,
    gateway: str | IPAddress | None = None,
    ifname: str | None = None,
    metric: int | None = None,
    netns: NetnsRef = None,
) -> None:
    """Install (replace) a route in the main table. Idempotent.

    Give `gateway`, `ifname` or both; an on-link route needs `ifname`.
    """
    route = Route(dst=dst, gateway=gateway, metric=metric)
    check_route(route)
    if gateway is None and ifname is None:
        raise InvalidArgument(f"route {dst}: give a gateway or an interface")
    if ifname is not None:
        ifname = validate.ifname(ifname)
    with rtnl(netns) as ipr:
        oif = link_index(ipr, ifname, netns) if ifname else None
        add_route_on(ipr, route, oif, ifname)


def set_default_route(
    gateway: str | IPAddress,
    *,
    ifname: str | None = None,
    metric: int | None = None,
    netns: NetnsRef = None,
) -> None:
    """Replace the default route of gateway's family with one via `gateway`. Idempotent."""
    gw = validate.ip_address(gateway, "gateway")
    add_route(
        "0.0.0.0/0" if gw.version == 4 else "::/0",
        gateway=gw,
        ifname=ifname,
        metric=metric,
        netns=netns,
    )


def delete_route(
    dst: str | IPNetwork,
    *,
    gateway: str | IPAddress | None = None,
    ifname: str | None = None,
    metric: int | None = None,
    netns: NetnsRef = None,
) -> bool:
    """Remove a route from the main table. Idempotent: False when no such route."""
    route = Route(dst=dst, gateway=gateway, metric=metric)
    check_route(route)
    if ifname is not None:
        ifname = validate.ifname(ifname)
    with rtnl(netns) as ipr:
        oif = None
        if ifname is not None:
            oif = find_index(ipr, ifname)
            if oif is None:
                return False
        kwargs = route_kwargs(route, oif)
        kwargs.pop("proto")
        try:
            ipr.route("del", **kwargs)
        except NetlinkError as e:
            if e.code in GONE:
                return False
            raise_kernel(e, f"delete route {dst}")
    return True


def add_neighbour(ifname: str, ip: str | IPAddress, mac: str, *, netns: NetnsRef = None) -> None:
    """A permanent neighbour (ARP/NDP) entry `ip` → `mac` on `ifname`. Idempotent."""
    ifname = validate.ifname(ifname)
    addr = validate.ip_address(ip, "neighbour address")
    lladdr = validate.mac(mac, unicast=False)
    with rtnl(netns) as ipr:
        index = link_index(ipr, ifname, netns)
        with kernel_errors(f"add neighbour {addr} on {ifname!r}", ip=addr, mac=lladdr):
            ipr.neigh(
                "replace",
                ifindex=index,
                dst=str(addr),
                lladdr=lladdr,
                state=NUD_PERMANENT,
                family=socket.AF_INET if addr.version == 4 else socket.AF_INET6,
            )


def delete_neighbour(ifname: str, ip: str | IPAddress, *, netns: NetnsRef = None) -> bool:
    """Remove the neighbour entry for `ip` on `ifname`. Idempotent."""
    ifname = validate.ifname(ifname)
    addr = validate.ip_address(ip, "neighbour address")
    with rtnl(netns) as ipr:
        index = find_index(ipr, ifname)
        if index is None:
            return False
        try:
            ipr.neigh(
                "del",
                ifindex=index,
                dst=str(addr),
                family=socket.AF_INET if addr.version == 4 else socket.AF_INET6,
            )
        except NetlinkError as e:
            if e.code in GONE:
                return False
            raise_kernel(e, f"delete neighbour {addr} on {ifname!r}")
    return True


def add_fdb(ifname: str, mac: str, dst: str | IPAddress, *, netns: NetnsRef = None) -> None:
    """`bridge fdb append MAC dev IFNAME dst DST self permanent` (VXLAN: MAC → VTEP).

    Append semantics: a MAC may have several remote VTEPs (the all-zero MAC is
    used for flooding to every peer). Idempotent: an identical entry is success.
    """
    ifname = validate.ifname(ifname)
    lladdr = validate.mac(mac, unicast=False)
    vtep = validate.ip_address(dst, "VTEP address")
    with rtnl(netns) as ipr:
        index = link_index(ipr, ifname, netns)
        try:
            ipr.fdb(
                "append",
                ifindex=index,
                lladdr=lladdr,
                dst=str(vtep),
                state=NUD_PERMANENT,
                flags=NTF_SELF,
            )
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise_kernel(e, f"add fdb {lladdr} dst {vtep} on {ifname!r}", mac=lladdr, dst=vtep)


def delete_fdb(
    ifname: str, mac: str, dst: str | IPAddress | None = None, *, netns: NetnsRef = None
) -> bool:
    """Remove an FDB entry (only the remote `dst` when given). Idempotent.

    Returns False when the device or the MAC entry is gone. Caveat: the VXLAN
    driver answers success for a missing *remote* of an existing MAC, so with
    `dst` True does not prove that remote was there.
    """
    ifname = validate.ifname(ifname)
    lladdr = validate.mac(mac, unicast=False)
    kwargs: dict[str, object] = {"lladdr": lladdr, "flags": NTF_SELF}
    if dst is not None:
        kwargs["dst"] = str(validate.ip_address(dst, "VTEP address"))
    with rtnl(netns) as ipr:
        index = find_index(ipr, ifname)
        if index is None:
            return False
        try:
            ipr.fdb("del", ifindex=index, **kwargs)
        except NetlinkError as e:
            if e.code in GONE:
                return False
            raise_kernel(e, f"delete fdb {lladdr} on {ifname!r}")
    return True


def raise_kernel(exc: BaseException, action: str, **values: object) -> NoReturn:
    raise to_domain_error(exc, action, **values) from exc
