"""Links: bridges, veth pairs (peer created in place), VXLAN devices, deletion.

Every function validates its input first, then talks netlink over a handle
opened for the call (`rtnl`). Creates raise AlreadyExists when the name is
taken (bridges accept `exist_ok`); deletes are idempotent (a missing link is
success, reported as False). A multi-step create that fails part-way removes
what it made before raising.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from contextlib import ExitStack, suppress

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWLINK

from services.errors import AlreadyExists, Exhausted, InvalidArgument, NotFound

from . import batch, validate
from .addressing import (
    add_address_on,
    check_route,
    find_index,
    link_index,
    route_kwargs,
)
from .nsenter import NetnsRef, netns_path, open_netns
from .query import link_info
from .rtnl import GONE, kernel_errors, raw_rtnl, rtnl, to_domain_error
from .sysctl import set_sysctl
from .types import LinkInfo, Route, VethPair
from .validate import IPAddress, IPInterface

log = logging.getLogger(__name__)

BRIDGE_MAX_PORTS = 1024
VXLAN_PORT = 4789


def random_mac() -> str:
    """A random, locally administered unicast MAC (what libnetwork gives its bridges)."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def _where(netns: NetnsRef) -> str:
    return f" in network namespace {netns!r}" if netns else ""


def _get(ipr: IPRoute, index: int) -> LinkInfo:
    msg = ipr.link("get", index=index)[0]
    names = {}
    master = msg.get("master")
    if master:
        names[master] = ipr.link("get", index=master)[0].get("ifname")
    return link_info(msg, names)


def get_link(name: str, *, netns: NetnsRef = None) -> LinkInfo:
    """The interface `name` of `netns` as the kernel reports it (NotFound if missing)."""
    name = validate.ifname(name)
    with kernel_errors(f"get link {name!r}{_where(netns)}"), rtnl(netns) as ipr:
        return _get(ipr, link_index(ipr, name, netns))


def link_exists(name: str, *, netns: NetnsRef = None) -> bool:
    name = validate.ifname(name)
    with kernel_errors(f"look up link {name!r}{_where(netns)}"), rtnl(netns) as ipr:
        return find_index(ipr, name) is not None


def _set_alias(ipr: IPRoute, index: int, alias: str | None) -> None:
    if alias is not None:
        ipr.link("set", index=index, ifalias=alias)


def _check_alias(alias: str | None) -> None:
    if alias is not None and (not isinstance(alias, str) or len(alias) > 255 or "\0" in alias):
        raise InvalidArgument(f"invalid interface alias {alias!r}")


def create_bridge(
    name: str,
    *,
    netns: NetnsRef = None,
    mtu: int | None = None,
    mac: str | None = None,
    addresses: Iterable[str | IPInterface] = (),
    alias: str | None = None,
    exist_ok: bool = False,
) -> LinkInfo:
    """A Linux bridge, STP off, up, with its gateway `addresses` (v4 and/or v6).

    `mac` defaults to a random fixed address (otherwise the bridge would take
    the lowest port MAC and change it as ports come and go). IPv6 addresses
    are added without DAD, so they are usable as soon as the bridge has a
    port. With `exist_ok`, an existing bridge of that name is brought to the
    requested state instead of raising AlreadyExists (up, MTU, alias, the
    given addresses added; other addresses are left alone); an existing link
    of another kind still raises it. On failure a bridge
    this call created is removed again.
    """
    name = validate.ifname(name, "bridge name")
    if mtu is not None:
        mtu = validate.mtu(mtu)
    mac = validate.mac(mac) if mac is not None else None
    ifaces = [validate.ip_interface(a, "bridge address") for a in addresses]
    _check_alias(alias)
    action = f"create bridge {name!r}{_where(netns)}"
    with kernel_errors(action, mtu=mtu, mac=mac), rtnl(netns) as ipr, ExitStack() as undo:
        index = find_index(ipr, name)
        if index is not None:
            existing = _get(ipr, index)
            if not exist_ok or existing.kind != "bridge":
                what = "bridge" if existing.kind == "bridge" else f"{existing.kind or 'link'}"
                raise AlreadyExists(
                    f"{action}: a {what} named {name!r} already exists", metadata={"ifname": name}
                )
            if mtu is not None and existing.mtu != mtu:
                ipr.link("set", index=index, mtu=mtu)
        else:
            kwargs: dict[str, object] = {
                "ifname": name,
                "kind": "bridge",
                "br_stp_state": 0,
                "address": mac or random_mac(),
            }
            if mtu is not None:
                kwargs["mtu"] = mtu
            ipr.link("add", **kwargs)
            index = link_index(ipr, name, netns)
            undo.callback(_delete_quietly, ipr, index, name)
            # Without this the bridge's link-local address stays tentative for
            # ~2 s after the first port comes up, and IPv6 forwarding to its
            # sandboxes stalls until DAD ends (seen with a packet capture).
            _disable_dad(name, netns)
        _set_alias(ipr, index, alias)
        for iface in ifaces:
            with kernel_errors(f"add address {iface} to bridge {name!r}", address=iface):
                add_address_on(ipr, index, name, iface, netns)
        ipr.link("set", index=index, state="up")
        info = _get(ipr, index)
        undo.pop_all()
        return info


def _disable_dad(name: str, netns: NetnsRef) -> None:
    # NotFound: IPv6 is disabled in this namespace, nothing to detect.
    with suppress(NotFound):
        set_sysctl(f"net/ipv6/conf/{name}/accept_dad", 0, netns=netns)


def _delete_index_quietly(sock: socket.socket, index: int, name: str) -> None:
    """Rollback step: never hides the error that caused the rollback."""
    try:
        batch.delete_link_index(sock, index, name)
    except Exception:  # noqa: BLE001
        log.warning("rollback: could not delete link %s (index %d)", name, index, exc_info=True)


def _delete_quietly(ipr: IPRoute, index: int, name: str) -> None:
    """Rollback step: never hides the error that caused the rollback."""
    try:
        ipr.link("del", index=index)
    except Exception:  # noqa: BLE001
        log.warning("rollback: could not delete link %s (index %d)", name, index, exc_info=True)


def create_veth(
    host_name: str,
    peer_name: str,
    *,
    peer_netns: NetnsRef,
    netns: NetnsRef = None,
    bridge: str | None = None,
    mtu: int | None = None,
    peer_mac: str | None = None,
    addresses: Sequence[str | IPInterface] = (),
    routes: Sequence[Route] = (),
    alias: str | None = None,
    hairpin: bool = False,
) -> VethPair:
    """A veth pair whose peer is born inside `peer_netns`: a Join in one call.

    One RTM_NEWLINK creates `host_name` in `netns` (enslaved to `bridge`, up)
    and `peer_name` directly in `peer_netns` with `peer_mac` and `mtu`: no
    move between namespaces (~3 ms instead of ~23 ms). Then the host end's
    `alias` and, with `hairpin`, its bridge port's hairpin mode (see
    `set_hairpin`); inside the sandbox: `addresses` (IPv6 without DAD), link
    up, `routes` through the peer (e.g. Route("0.0.0.0/0", gateway=...)).
    Four netlink rounds in all (`osl.batch`): bridge lookup, create, host
    end, sandbox end.

    Errors: AlreadyExists when either name is taken, NotFound when the bridge
    or a namespace is missing, Exhausted when the bridge already has the
    kernel's maximum of ports. On any failure the pair is deleted again.
    """
    host_name = validate.ifname(host_name, "host interface name")
    peer_name = validate.ifname(peer_name, "sandbox interface name")
    if bridge is not None:
        bridge = validate.ifname(bridge, "bridge name")
    if mtu is not None:
        mtu = validate.mtu(mtu)
    peer_mac = validate.mac(peer_mac) if peer_mac is not None else None
    ifaces = [validate.ip_interface(a) for a in addresses]
    for route in routes:
        check_route(route)
    _check_alias(alias)
    if netns_path(netns) == netns_path(peer_netns) and host_name == peer_name:
        raise InvalidArgument(f"veth ends must have different names: {host_name!r}")

    action = f"create veth {host_name!r} (peer {peer_name!r}{_where(peer_netns)})"
    same_ns = netns_path(netns) == netns_path(peer_netns)
    # Resources (fds, sockets) are released after the rollback steps have run.
    with ExitStack() as res:
        peer_fd = res.enter_context(open_netns(peer_netns))
        if peer_fd is None and netns is not None:
            # The peer goes to this process's namespace, seen from another one.
            peer_fd = res.enter_context(open_netns("/proc/thread-self/ns/net"))
        res.enter_context(kernel_errors(action, mtu=mtu, mac=peer_mac))
        sock = res.enter_context(raw_rtnl(netns))
        undo = res.enter_context(ExitStack())
        peer: dict[str, object] = {"ifname": peer_name}
        if peer_fd is not None:
            peer["net_ns_fd"] = peer_fd
        if peer_mac is not None:
            peer["address"] = peer_mac
        if mtu is not None:
            peer["mtu"] = mtu
        attrs: dict[str, object] = {"ifname": host_name}
        if bridge is not None:
            attrs["master"] = _index_of(sock, bridge, netns)
        if mtu is not None:
            attrs["mtu"] = mtu
        peer_msg = {"attrs": [(f"IFLA_{k.upper()}", v) for k, v in peer.items()]}
        attrs["linkinfo"] = {
            "attrs": [
                ("IFLA_INFO_KIND", "veth"),
                ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_msg)]}),
            ]
        }
        reply = batch.create_link(sock, batch.link_msg(up=True, attrs=attrs))
        if reply.error is not None:
            raise _veth_error(
                reply.error, sock, action, host_name, peer_name, bridge, mtu, peer_mac
            ) from reply.error
        # Linux < 6.3 does not echo a created link: ask for it by name.
        created = reply.message or batch.get_link(sock, host_name)
        if created is None:
            raise NotFound(f"{action}: the new link vanished", metadata={"ifname": host_name})
        host_index = batch.link_index_of(created)
        undo.callback(_delete_index_quietly, sock, host_index, host_name)
        peer_index = batch.link_attr_u32(created, batch.IFLA_LINK)
        if peer_index is None:
            raise NotFound(f"{action}: the kernel did not name the peer's index")
        _configure_host_end(sock, host_index, host_name, alias, hairpin, bridge)
        with ExitStack() as sb_res:
            sb_res.enter_context(kernel_errors(f"configure {peer_name!r}{_where(peer_netns)}"))
            sb = sock if same_ns else sb_res.enter_context(raw_rtnl(peer_netns))
            _configure_peer(sb, peer_index, peer_name, ifaces, routes, peer_netns)
        undo.pop_all()
    return VethPair(
        host_name=host_name, host_index=host_index, peer_name=peer_name, peer_index=peer_index
    )


def _index_of(sock: socket.socket, name: str, netns: NetnsRef) -> int:
    found = batch.get_link(sock, name)
    if found is None:
        raise NotFound(
            f"interface {name!r} does not exist{_where(netns)}",
            reason="LINK_NOT_FOUND",
            metadata={"ifname": name},
        )
    return batch.link_index_of(found)


def _configure_host_end(
    sock: socket.socket,
    index: int,
    name: str,
    alias: str | None,
    hairpin: bool,
    bridge: str | None,
) -> None:
    """Alias and hairpin mode of a new veth's host end, in one round."""
    todo = batch.Batch()
    if alias is not None:
        todo.add(batch.link_msg(index, ifalias=alias), RTM_NEWLINK, 0, f"set alias of {name!r}")
    if hairpin and bridge is not None:
        slave = {
            "attrs": [
                ("IFLA_INFO_KIND", "bridge_slave"),
                ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", 1)]}),
            ]
        }
        todo.add(
            batch.link_msg(index, linkinfo=slave),
            RTM_NEWLINK,
            0,
            f"set hairpin mode of {name!r}",
        )
    todo.run(sock)


def _configure_peer(
    sock: socket.socket,
    index: int,
    name: str,
    ifaces: Sequence[IPInterface],
    routes: Sequence[Route],
    netns: NetnsRef,
) -> None:
    """Addresses, link up, routes of a veth's container end: one round (two when
    IPv6 was disabled on it and has to be enabled first)."""
    todo = batch.Batch()
    for iface in ifaces:
        batch.add_address(todo, index, name, iface)
    todo.add(batch.link_msg(index, up=True), RTM_NEWLINK, 0, f"set {name!r} up")
    for route in routes:
        batch.add_route(todo, route, route_kwargs(route, index), name)
    replies = todo.send(sock)
    if any(
        r.error is not None and r.error.code == errno.EACCES and iface.version == 6
        for r, iface in zip(replies, ifaces, strict=False)
    ):
        # IPv6 is disabled on this interface (a host or namespace default): enable it.
        set_sysctl(f"net/ipv6/conf/{name}/disable_ipv6", 0, netns=netns)
        replies = todo.send(sock)
    todo.check(replies)


def _veth_error(
    e: NetlinkError,
    sock: socket.socket,
    action: str,
    host_name: str,
    peer_name: str,
    bridge: str | None,
    mtu: int | None,
    mac: str | None,
) -> Exception:
    if e.code in (errno.EXFULL, errno.E2BIG) and bridge is not None:
        return Exhausted(
            f"bridge {bridge!r} is full: a Linux bridge has at most {BRIDGE_MAX_PORTS} ports",
            reason="BRIDGE_FULL",
            metadata={"bridge": bridge},
        )
    if e.code == errno.EEXIST:
        who = host_name if batch.get_link(sock, host_name) is not None else peer_name
        return AlreadyExists(
            f"{action}: interface {who!r} already exists", metadata={"ifname": who}
        )
    return to_domain_error(e, action, mtu=mtu, mac=mac)


def create_vxlan(
    name: str,
    *,
    vni: int,
    local: str | IPAddress | None = None,
    dstport: int = VXLAN_PORT,
    underlay: str | None = None,
    mtu: int | None = None,
    learning: bool = False,
    proxy: bool = False,
    netns: NetnsRef = None,
    underlay_netns: NetnsRef | bool = True,
    bridge: str | None = None,
    alias: str | None = None,
) -> LinkInfo:
    """A VXLAN device for the overlay driver: VNI, local VTEP, UDP port, learning off.

    The device appears in `netns`; its UDP socket lives in `underlay_netns`
    (True: the same namespace). Creating it in the overlay sandbox directly,
    with the socket in the host namespace, is one RTM_NEWLINK: no move.
    `underlay` pins it to an underlay interface of `underlay_netns`. When
    `bridge` (in `netns`) is given, the device is enslaved to it. The device is
    brought up. Remote VTEPs are added with `add_fdb`; on failure the device
    is removed again. With `proxy`, the device answers ARP/NDP requests itself
    from the neighbour entries on it (`add_neighbour`), so they never need
    flooding to other VTEPs.
    """
    name = validate.ifname(name, "VXLAN device name")
    vni = validate.vni(vni)
    dstport = validate.port(dstport, "VXLAN UDP port")
    vtep = validate.ip_address(local, "local VTEP address") if local is not None else None
    if underlay is not None:
        underlay = validate.ifname(underlay, "underlay interface name")
    if mtu is not None:
        mtu = validate.mtu(mtu)
    if bridge is not None:
        bridge = validate.ifname(bridge, "bridge name")
    _check_alias(alias)
    sock_ns: NetnsRef = netns if underlay_netns is True else underlay_netns  # type: ignore[assignment]
    separate = netns_path(sock_ns) != netns_path(netns)

    action = f"create vxlan {name!r} (vni {vni}){_where(netns)}"
    kwargs: dict[str, object] = {
        "ifname": name,
        "kind": "vxlan",
        "vxlan_id": vni,
        "vxlan_port": dstport,
        "vxlan_learning": int(learning),
        "vxlan_proxy": int(proxy),
    }
    if vtep is not None:
        kwargs["vxlan_local" if vtep.version == 4 else "vxlan_local6"] = str(vtep)
    if mtu is not None:
        kwargs["mtu"] = mtu
    with ExitStack() as res:
        res.enter_context(kernel_errors(action, vni=vni, local=vtep, mtu=mtu))
        dev_fd = res.enter_context(open_netns(netns)) if separate else None
        if separate and dev_fd is None:
            dev_fd = res.enter_context(open_netns("/proc/thread-self/ns/net"))
        with rtnl(sock_ns) as under:
            if underlay is not None:
                kwargs["vxlan_link"] = link_index(under, underlay, sock_ns)
            if dev_fd is not None:
                kwargs["net_ns_fd"] = dev_fd
            under.link("add", **kwargs)
        ipr = res.enter_context(rtnl(netns))
        with ExitStack() as undo:
            index = link_index(ipr, name, netns)
            undo.callback(_delete_quietly, ipr, index, name)
            _set_alias(ipr, index, alias)
            if bridge is not None:
                _enslave(ipr, index, name, bridge, netns)
            ipr.link("set", index=index, state="up")
            info = _get(ipr, index)
            undo.pop_all()
            return info


def _enslave(ipr: IPRoute, index: int, name: str, bridge: str, netns: NetnsRef) -> None:
    master = link_index(ipr, bridge, netns)
    try:
        ipr.link("set", index=index, master=master)
    except NetlinkError as e:
        if e.code in (errno.EXFULL, errno.E2BIG):
            raise Exhausted(
                f"bridge {bridge!r} is full: a Linux bridge has at most {BRIDGE_MAX_PORTS} ports",
                reason="BRIDGE_FULL",
                metadata={"bridge": bridge},
            ) from e
        raise to_domain_error(e, f"attach {name!r} to bridge {bridge!r}") from e


def set_master(name: str, bridge: str | None, *, netns: NetnsRef = None) -> None:
    """Enslave `name` to `bridge` (None: detach it). Exhausted when the bridge is full."""
    name = validate.ifname(name)
    if bridge is not None:
        bridge = validate.ifname(bridge, "bridge name")
    with kernel_errors(f"set master of {name!r}"), rtnl(netns) as ipr:
        index = link_index(ipr, name, netns)
        if bridge is None:
            ipr.link("set", index=index, master=0)
        else:
            _enslave(ipr, index, name, bridge, netns)


def set_link_state(name: str, up: bool, *, netns: NetnsRef = None) -> None:
    """Bring `name` up or down."""
    name = validate.ifname(name)
    with kernel_errors(f"set {name!r} {'up' if up else 'down'}"), rtnl(netns) as ipr:
        ipr.link("set", index=link_index(ipr, name, netns), state="up" if up else "down")


def set_hairpin(name: str, on: bool, *, netns: NetnsRef = None) -> None:
    """Hairpin mode of bridge port `name` (IFLA_BRPORT_MODE): the bridge may send a
    frame back out of the port it came in on. Port publishing needs it for a sandbox
    reaching its own published port through a host address: with br_netfilter the
    DNATed packet is re-bridged towards the port it arrived on."""
    name = validate.ifname(name)
    with kernel_errors(f"set hairpin mode of {name!r}"), rtnl(netns) as ipr:
        ipr.brport("set", index=link_index(ipr, name, netns), mode=1 if on else 0)


def delete_link(name: str, *, netns: NetnsRef = None) -> bool:
    """Delete interface `name` (both ends for a veth). Idempotent.

    Returns False when the link, or its whole namespace, is already gone.
    Takes ~20 ms of kernel time for a veth; see `delete_link_async`.
    """
    name = validate.ifname(name)
    try:
        with rtnl(netns) as ipr:
            return delete_link_on(ipr, name, netns)
    except NotFound as e:
        if e.reason == "NETNS_NOT_FOUND":
            return False
        raise


def delete_link_on(ipr: IPRoute, name: str, netns: NetnsRef) -> bool:
    index = find_index(ipr, name)
    if index is None:
        return False
    try:
        ipr.link("del", index=index)
    except NetlinkError as e:
        if e.code in GONE:
            return False
        raise to_domain_error(e, f"delete link {name!r}{_where(netns)}") from e
    return True


def move_link_into_netns(
    name: str,
    netns: NetnsRef,
    new_name: str | None = None,
    *,
    from_netns: NetnsRef = None,
    mac: str | None = None,
) -> None:
    """Move interface `name` of `from_netns` into `netns`, renamed `new_name`.

    libnetwork's osl AddInterface for links made by others (a remote plugin's
    veth end): one RTM_NEWLINK moves and renames it (the kernel takes it down
    on the way); `mac`, when given, is set once it is there. The caller then
    adds addresses and brings it up. Moving it back is the same call with the
    namespaces swapped (libnetwork's Remove). NotFound when `name` is missing,
    AlreadyExists when the name is taken in `netns`.
    """
    name = validate.ifname(name)
    target = validate.ifname(new_name) if new_name is not None else name
    mac = validate.mac(mac) if mac is not None else None
    if netns_path(netns) == netns_path(from_netns):
        raise InvalidArgument(f"move link {name!r}: source and target namespace are the same")
    action = f"move link {name!r}{_where(from_netns)} to {target!r}{_where(netns)}"
    with ExitStack() as res:
        fd = res.enter_context(open_netns(netns))
        if fd is None:
            # Into this process's namespace, seen from another one.
            fd = res.enter_context(open_netns("/proc/thread-self/ns/net"))
        res.enter_context(kernel_errors(action, ifname=target))
        with rtnl(from_netns) as ipr:
            index = link_index(ipr, name, from_netns)
            ipr.link("set", index=index, state="down")
            ipr.link("set", index=index, net_ns_fd=fd, ifname=target)
        if mac is not None:
            with rtnl(netns) as ipr:
                ipr.link("set", index=link_index(ipr, target, netns), address=mac)
