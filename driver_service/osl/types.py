"""Values that osl takes and returns. Frozen, typed, free of pyroute2 objects."""

from __future__ import annotations

from dataclasses import dataclass

from .validate import IPAddress, IPInterface, IPNetwork


@dataclass(frozen=True)
class Route:
    """A route to install: `dst` via `gateway` (or on-link when gateway is None).

    `dst` "0.0.0.0/0" / "::/0" is a default route. Strings are accepted and
    validated when the route is installed.
    """

    dst: str | IPNetwork
    gateway: str | IPAddress | None = None
    metric: int | None = None


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    # "veth", "bridge", "vxlan", ... ; None for lo and link types without IFLA_LINKINFO
    kind: str | None
    mac: str | None
    mtu: int
    # administratively up (IFF_UP)
    up: bool
    # the kernel's operstate: "UP", "DOWN", "UNKNOWN", "LOWERLAYERDOWN", ...
    oper_state: str
    # name of the bridge it is enslaved to, if any
    master: str | None = None
    alias: str | None = None
    # VXLAN only: VNI, local VTEP address, UDP port, learning, ARP proxy
    vxlan: VxlanInfo | None = None


@dataclass(frozen=True)
class VxlanInfo:
    vni: int
    local: str | None
    port: int
    learning: bool
    underlay_index: int | None = None
    # answers ARP/NDP from its neighbour entries
    proxy: bool = False


@dataclass(frozen=True)
class AddressInfo:
    ifname: str
    index: int
    address: IPInterface
    # "global", "link", "host", ...
    scope: str
    # True while IPv6 duplicate address detection is still running
    tentative: bool = False


@dataclass(frozen=True)
class RouteInfo:
    dst: IPNetwork
    gateway: IPAddress | None
    ifname: str | None
    metric: int | None
    table: int
    # "static", "kernel", "boot", ... (RTPROT_*)
    protocol: str
    scope: str


@dataclass(frozen=True)
class NeighbourInfo:
    ifname: str
    ip: IPAddress
    mac: str | None
    # NUD_* names, e.g. ("permanent",)
    state: tuple[str, ...]


@dataclass(frozen=True)
class FdbInfo:
    ifname: str
    mac: str
    # remote VTEP for VXLAN entries
    dst: IPAddress | None
    permanent: bool


@dataclass(frozen=True)
class VethPair:
    host_name: str
    host_index: int
    peer_name: str
    peer_index: int


@dataclass(frozen=True)
class NetnsState:
    """What the kernel reports for one namespace (GetSandbox)."""

    links: tuple[LinkInfo, ...] = ()
    addresses: tuple[AddressInfo, ...] = ()
    routes: tuple[RouteInfo, ...] = ()
