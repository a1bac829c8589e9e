"""Read-only views of a namespace, as the kernel reports them (for GetSandbox).

Tombstones (links that `delete_link_async` has already detached and will
delete in the background) are left out unless asked for: to a caller they are
already gone.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_TENTATIVE

from . import validate
from .batch import LeanLink, dump_links
from .nsenter import NetnsRef
from .rtnl import kernel_errors, raw_rtnl, rtnl
from .types import (
    AddressInfo,
    FdbInfo,
    LinkInfo,
    NeighbourInfo,
    NetnsState,
    RouteInfo,
    VxlanInfo,
)

TOMBSTONE_PREFIX = "cnmgc"
RT_TABLE_MAIN = 254
IFF_UP = 0x1
NUD_PERMANENT = 0x80
_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
_PROTOS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 16: "dhcp", 9: "ra"}
_NUD = {
    0x01: "incomplete",
    0x02: "reachable",
    0x04: "stale",
    0x08: "delay",
    0x10: "probe",
    0x20: "failed",
    0x40: "noarp",
    0x80: "permanent",
}


def _dump(fn, *args, **kwargs) -> list:
    """A netlink dump, retried when the kernel flags it as interrupted by a change."""
    for attempt in range(5):
        try:
            return list(fn(*args, **kwargs))
        except NetlinkDumpInterrupted:
            if attempt == 4:
                raise
    return []


def is_tombstone(name: str | None) -> bool:
    return name is not None and name.startswith(TOMBSTONE_PREFIX)


def link_info(msg, names: dict[int, str]) -> LinkInfo:
    kind = msg.get(("linkinfo", "kind"))
    master = msg.get("master")
    vx = None
    if kind == "vxlan":
        data = msg.get(("linkinfo", "data"))
        vx = VxlanInfo(
            vni=data.get("vxlan_id"),
            local=data.get("vxlan_local") or data.get("vxlan_local6"),
            port=data.get("vxlan_port"),
            learning=bool(data.get("vxlan_learning")),
            underlay_index=data.get("vxlan_link") or None,
            proxy=bool(data.get("vxlan_proxy")),
        )
    return LinkInfo(
        index=msg["index"],
        name=msg.get("ifname"),
        kind=kind,
        mac=msg.get("address"),
        mtu=msg.get("mtu"),
        up=bool(msg["flags"] & IFF_UP),
        oper_state=str(msg.get("operstate") or "UNKNOWN"),
        master=names.get(master) if master else None,
        alias=msg.get("ifalias"),
        vxlan=vx,
    )


def _links(ipr: IPRoute, tombstones: bool) -> list[LinkInfo]:
    msgs = _dump(ipr.link, "dump")
    names = {m["index"]: m.get("ifname") for m in msgs}
    out = [link_info(m, names) for m in msgs]
    return [li for li in out if tombstones or not is_tombstone(li.name)]


def _addresses(ipr: IPRoute, names: dict[int, str]) -> list[AddressInfo]:
    out = []
    for m in _dump(ipr.addr, "dump"):
        name = names.get(m["index"])
        if name is None:
            continue
        out.append(
            AddressInfo(
                ifname=name,
                index=m["index"],
                address=ipaddress.ip_interface(f"{m.get('address')}/{m['prefixlen']}"),
                scope=_SCOPES.get(m["scope"], str(m["scope"])),
                tentative=bool((m.get("IFA_FLAGS") or m["flags"]) & IFA_F_TENTATIVE),
            )
        )
    return out


def _routes(ipr: IPRoute, names: dict[int, str], table: int | None) -> list[RouteInfo]:
    out = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for m in _dump(ipr.route, "dump", family=family):
            tbl = m.get("table") or m["table"]
            if table is not None and tbl != table:
                continue
            oif = m.get("oif")
            if oif is not None and oif not in names:
                continue
            dst = m.get("dst")
            any_ = "0.0.0.0" if family == socket.AF_INET else "::"
            gw = m.get("gateway")
            out.append(
                RouteInfo(
                    dst=ipaddress.ip_network(f"{dst or any_}/{m['dst_len']}", strict=False),
                    gateway=ipaddress.ip_address(gw) if gw else None,
                    ifname=names.get(oif) if oif else None,
                    metric=m.get("priority"),
                    table=tbl,
                    protocol=_PROTOS.get(m["proto"], str(m["proto"])),
                    scope=_SCOPES.get(m["scope"], str(m["scope"])),
                )
            )
    return out


def _names(links: Iterable[LinkInfo]) -> dict[int, str]:
    return {li.index: li.name for li in links}


def list_links(*, netns: NetnsRef = None, tombstones: bool = False) -> list[LinkInfo]:
    """Every interface of `netns`."""
    with kernel_errors(f"list links in {netns or 'the host namespace'}"), rtnl(netns) as ipr:
        return _links(ipr, tombstones)


def link_names(
    *,
    netns: NetnsRef = None,
    tombstones: bool = False,
    master: str | None = None,
    kind: str | None = None,
) -> set[str]:
    """The names of the interfaces of `netns` (only those plugged into bridge
    `master`, only those of `kind` when given): `list_links` without decoding
    anything else, for callers that look at every link often (the link repair
    pass, the overlay's Leave); its cost and garbage stay small however many
    veths."""
    with kernel_errors(f"list links in {netns or 'the host namespace'}"):
        links = _lean_links(netns, tombstones)
    if master is not None:
        found = [li.index for li in links if li.name == master]
        links = [li for li in links if found and li.master == found[0]]
    return {li.name for li in links if kind is None or li.kind == kind}


def _lean_links(netns: NetnsRef, tombstones: bool) -> list[LeanLink]:
    """The links of `netns` by the lean dump (see `batch.dump_links`)."""
    with raw_rtnl(netns) as sock:
        for attempt in range(5):
            links, interrupted = dump_links(sock)
            if not interrupted:
                break
            if attempt == 4:
                raise NetlinkDumpInterrupted()
    return [li for li in links if tombstones or not is_tombstone(li.name)]


def _index_names(netns: NetnsRef, tombstones: bool) -> dict[int, str]:
    """Index -> name of the links of `netns`: what the listings below need
    to name an interface."""
    return {li.index: li.name for li in _lean_links(netns, tombstones)}


def list_addresses(*, netns: NetnsRef = None, ifname: str | None = None) -> list[AddressInfo]:
    """Addresses of `netns` (of one interface when `ifname` is given)."""
    if ifname is not None:
        ifname = validate.ifname(ifname)
    with kernel_errors(f"list addresses in {netns or 'the host namespace'}"), rtnl(netns) as ipr:
        names = _index_names(netns, False)
        return [a for a in _addresses(ipr, names) if ifname is None or a.ifname == ifname]


def list_routes(*, netns: NetnsRef = None, table: int | None = RT_TABLE_MAIN) -> list[RouteInfo]:
    """IPv4 and IPv6 routes of `netns` (main table by default; None: every table)."""
    with kernel_errors(f"list routes in {netns or 'the host namespace'}"), rtnl(netns) as ipr:
        return _routes(ipr, _index_names(netns, False), table)


def snapshot(*, netns: NetnsRef = None) -> NetnsState:
    """Links, addresses and main-table routes of `netns`, read over one socket."""
    with kernel_errors(f"inspect {netns or 'the host namespace'}"), rtnl(netns) as ipr:
        links = _links(ipr, False)
        names = _names(links)
        return NetnsState(
            links=tuple(links),
            addresses=tuple(_addresses(ipr, names)),
            routes=tuple(_routes(ipr, names, RT_TABLE_MAIN)),
        )


def list_neighbours(*, netns: NetnsRef = None, ifname: str | None = None) -> list[NeighbourInfo]:
    """ARP/NDP entries of `netns` (of one interface when `ifname` is given)."""
    if ifname is not None:
        ifname = validate.ifname(ifname)
    with kernel_errors(f"list neighbours in {netns or 'the host namespace'}"), rtnl(netns) as ipr:
        names = _index_names(netns, True)
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for m in _dump(ipr.neigh, "dump", family=family):
                name = names.get(m["ifindex"])
                if name is None or (ifname is not None and name != ifname):
                    continue
                out.append(
                    NeighbourInfo(
                        ifname=name,
                        ip=ipaddress.ip_address(m.get("dst")),
                        mac=m.get("lladdr"),
                        state=tuple(v for k, v in _NUD.items() if m["state"] & k),
                    )
                )
        return out


def list_fdb(ifname: str, *, netns: NetnsRef = None) -> list[FdbInfo]:
    """Forwarding database entries of one device (a bridge port or a VXLAN device)."""
    ifname = validate.ifname(ifname)
    with kernel_errors(f"list fdb of {ifname!r}"), rtnl(netns) as ipr:
        names = _index_names(netns, True)
        out = []
        for m in _dump(ipr.fdb, "dump"):
            if names.get(m["ifindex"]) != ifname:
                continue
            dst = m.get("dst")
            out.append(
                FdbInfo(
                    ifname=ifname,
                    mac=m.get("lladdr"),
                    dst=ipaddress.ip_address(dst) if dst else None,
                    permanent=bool(m["state"] & NUD_PERMANENT),
                )
            )
        return out
