"""macvlan children and 802.1q sub-interfaces: the links of the macvlan driver.

A macvlan child is born directly in the sandbox: one RTM_NEWLINK sent in the
parent's namespace with IFLA_LINK = the parent and IFLA_NET_NS_FD = the
sandbox, like the veth peer of `create_veth`. Then, inside the sandbox:
addresses, up, routes. On failure the child is removed again.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from contextlib import ExitStack

from pyroute2.netlink.exceptions import NetlinkError

from services.errors import AlreadyExists, FailedPrecondition, InvalidArgument

from . import validate
from .addressing import add_address_on, add_route_on, check_route, find_index, link_index
from .links import _check_alias, _delete_quietly, _set_alias, _where
from .nsenter import NetnsRef, netns_path, open_netns
from .rtnl import kernel_errors, rtnl, to_domain_error
from .types import Route

MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
VLAN_ID_MIN, VLAN_ID_MAX = 1, 4094


def create_macvlan(
    name: str,
    *,
    parent: str,
    mode: str,
    netns: NetnsRef,
    parent_netns: NetnsRef = None,
    mac: str | None = None,
    addresses: Sequence[str] = (),
    routes: Sequence[Route] = (),
    alias: str | None = None,
) -> int:
    """A macvlan child `name` of `parent` (in `parent_netns`), created inside `netns`.

    Its MTU is the parent's (the kernel's default for a child). `mac` None:
    the kernel picks one (passthru: the parent's own). Returns the child's
    index in `netns`. Errors: NotFound (parent or namespace missing),
    AlreadyExists (`name` taken in `netns`), FailedPrecondition (the kernel
    refuses the child on this parent: another passthru child, a port of a
    bridge...). On any failure nothing is left.
    """
    name = validate.ifname(name, "sandbox interface name")
    parent = validate.ifname(parent, "parent interface name")
    if mode not in MACVLAN_MODES:
        raise InvalidArgument(f"invalid macvlan mode {mode!r} (one of {', '.join(MACVLAN_MODES)})")
    mac = validate.mac(mac) if mac is not None else None
    ifaces = [validate.ip_interface(a) for a in addresses]
    for route in routes:
        check_route(route)
    _check_alias(alias)
    if netns_path(netns) == netns_path(parent_netns):
        raise InvalidArgument(f"macvlan child {name!r} must be made in another namespace")
    action = f"create macvlan {name!r} on parent {parent!r}{_where(netns)}"
    with ExitStack() as res:
        fd = res.enter_context(open_netns(netns))
        if fd is None:
            fd = res.enter_context(open_netns("/proc/thread-self/ns/net"))
        res.enter_context(kernel_errors(action, mac=mac))
        with rtnl(parent_netns) as host:
            kwargs: dict[str, object] = {
                "ifname": name,
                "kind": "macvlan",
                "link": link_index(host, parent, parent_netns),
                "macvlan_mode": mode,
                "net_ns_fd": fd,
            }
            if mac is not None:
                kwargs["address"] = mac
            try:
                host.link("add", **kwargs)
            except NetlinkError as e:
                raise _macvlan_error(e, action, name, parent, mode, mac) from e
        sb = res.enter_context(rtnl(netns))
        undo = res.enter_context(ExitStack())
        index = link_index(sb, name, netns)
        undo.callback(_delete_quietly, sb, index, name)
        _set_alias(sb, index, alias)
        for iface in ifaces:
            with kernel_errors(f"add address {iface} to {name!r}", address=iface):
                add_address_on(sb, index, name, iface, netns)
        sb.link("set", index=index, state="up")
        for route in routes:
            add_route_on(sb, route, index, name)
        undo.pop_all()
        return index


def _macvlan_error(
    e: NetlinkError, action: str, name: str, parent: str, mode: str, mac: str | None
) -> Exception:
    if e.code == errno.EEXIST:
        return AlreadyExists(
            f"{action}: interface {name!r} already exists", metadata={"ifname": name}
        )
    if e.code in (errno.EINVAL, errno.EBUSY):
        # The kernel's refusals for a parent: a passthru child is alone on its
        # parent; a parent that is a bridge/bond port has its receive hook taken.
        return FailedPrecondition(
            f"{action}: the kernel refuses a {mode} macvlan on {parent!r} "
            f"({e.args[1] if len(e.args) > 1 and e.args[1] else errno.errorcode.get(e.code)})",
            reason="PARENT_REFUSED",
            metadata={"parent": parent, "mode": mode},
        )
    return to_domain_error(e, action, mac=mac)


def parse_vlan_parent(name: str) -> tuple[str, int] | None:
    """("eth0", 10) for an 802.1q sub-interface name "eth0.10"; None for any other name.

    InvalidArgument when it has the dotted shape but the VLAN id is not
    1..4094 (libnetwork's rule)."""
    base, dot, vid = name.rpartition(".")
    if not dot or not base or not vid.isdigit():
        return None
    value = int(vid)
    if not VLAN_ID_MIN <= value <= VLAN_ID_MAX:
        raise InvalidArgument(
            f"vlan id must be between {VLAN_ID_MIN}-{VLAN_ID_MAX}, received: {value} "
            f"(parent {name!r})",
            reason="INVALID_OPTION",
            metadata={"option": "parent"},
        )
    return base, value


def create_vlan(
    name: str, *, base: str, vlan_id: int, netns: NetnsRef = None, alias: str | None = None
) -> None:
    """The 802.1q sub-interface `name` of `base` with `vlan_id`, up.

    FailedPrecondition VLAN_UNSUPPORTED when the kernel has no 802.1q support
    (no `8021q` module: the link kind is unknown to it)."""
    name = validate.ifname(name, "sub-interface name")
    base = validate.ifname(base, "parent interface name")
    if not VLAN_ID_MIN <= vlan_id <= VLAN_ID_MAX:
        raise InvalidArgument(f"invalid VLAN id {vlan_id}")
    _check_alias(alias)
    action = f"create 802.1q sub-interface {name!r} (vlan {vlan_id} on {base!r}){_where(netns)}"
    with kernel_errors(action), rtnl(netns) as ipr, ExitStack() as undo:
        if find_index(ipr, name) is not None:
            raise AlreadyExists(f"{action}: interface {name!r} already exists")
        try:
            ipr.link(
                "add", ifname=name, kind="vlan", link=link_index(ipr, base, netns), vlan_id=vlan_id
            )
        except NetlinkError as e:
            if e.code == errno.EOPNOTSUPP:
                raise FailedPrecondition(
                    f"cannot create {name!r}: this kernel has no 802.1q VLAN support "
                    "(module 8021q not available)",
                    reason="VLAN_UNSUPPORTED",
                    metadata={"parent": name},
                ) from e
            raise
        index = link_index(ipr, name, netns)
        undo.callback(_delete_quietly, ipr, index, name)
        _set_alias(ipr, index, alias)
        ipr.link("set", index=index, state="up")
        undo.pop_all()
