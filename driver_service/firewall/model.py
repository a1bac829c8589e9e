"""The firewall's desired state: bridge networks, bridge ports and port mappings.

A `BridgeNetwork` is parsed and validated when it is built, so a bad
interface name or CIDR raises `InvalidArgument` naming the value before
anything reaches the kernel. Published ports arrive as the shared value type
(`services.values.ports.PortBinding`), validated once at the driver's gRPC
edge; `PortMapping` is only their typed form for the rules.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from driver_service.osl import validate
from services.errors import InvalidArgument
from services.values import cidr
from services.values.ports import PortBinding

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NETWORK_ID_MAX = 128
_NETWORK_ID = re.compile(r"[A-Za-z0-9_.-]+")

# (host address, protocol, host port): what identifies a published port.
MappingKey = tuple[IPAddress, str, int]


def network_id(value: object) -> str:
    """A network id: 1..128 characters of [A-Za-z0-9_.-] (libnetwork uses 64 hex)."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= NETWORK_ID_MAX
        or not _NETWORK_ID.fullmatch(value)
    ):
        raise InvalidArgument(
            f"invalid network id {value!r}: use 1..{NETWORK_ID_MAX} of [A-Za-z0-9_.-]"
        )
    return value


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"invalid {what} {value!r}: must be true or false")
    return value


def _subnet(value: object) -> IPNetwork:
    net = cidr.network(value, what="subnet")
    if net.prefixlen == 0 or net.is_loopback or net.is_multicast or net.is_unspecified:
        # A /0 would make the masquerade set match every source on the host.
        raise InvalidArgument(f"invalid subnet {value!r}: not a usable bridge subnet")
    return net


@dataclass(frozen=True)
class BridgeNetwork:
    """What the firewall must know about one bridge network on this host.

    `subnets` are the network's IPv4/IPv6 subnets (sources to masquerade when
    `masquerade` is on). `icc=False` drops traffic between the network's
    sandboxes (their bridge ports must be registered with
    `Firewall.attach_port`). `internal=True` means no forwarding in or out of
    the bridge and no masquerade; it wins over `masquerade`.
    """

    network_id: str
    bridge: str
    subnets: tuple[IPNetwork, ...] = ()
    icc: bool = True
    masquerade: bool = True
    internal: bool = False

    def __post_init__(self) -> None:
        subnets = self.subnets
        if isinstance(subnets, str | ipaddress.IPv4Network | ipaddress.IPv6Network):
            subnets = (subnets,)
        if not isinstance(subnets, tuple | list | frozenset | set):
            raise InvalidArgument(f"invalid subnets {subnets!r}: expected a list of CIDRs")
        object.__setattr__(self, "network_id", network_id(self.network_id))
        object.__setattr__(self, "bridge", validate.ifname(self.bridge, "bridge name"))
        object.__setattr__(
            self, "subnets", tuple(sorted({_subnet(s) for s in subnets}, key=_net_sort_key))
        )
        object.__setattr__(self, "icc", _flag(self.icc, "icc flag"))
        object.__setattr__(self, "masquerade", _flag(self.masquerade, "masquerade flag"))
        object.__setattr__(self, "internal", _flag(self.internal, "internal flag"))

    @property
    def masquerades(self) -> bool:
        return self.masquerade and not self.internal

    def contains(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.subnets)


@dataclass(frozen=True)
class PortMapping:
    """One published port as the rules need it: (host_ip, protocol, host_port) ->
    (container_ip, container_port), addresses as ipaddress objects.

    Made only by `PortMapping.of` from a published `PortBinding`, which the
    driver built from a binding validated at its gRPC edge (`specs`), a port
    its allocator chose and the endpoint's validated address: nothing here
    checks it again. `host_ip` 0.0.0.0 / :: means every local address.
    """

    protocol: str
    host_ip: IPAddress
    host_port: int
    container_ip: IPAddress
    container_port: int
    # The binding it came from: rules may read its other fields; not part of the identity.
    binding: PortBinding = field(compare=False, repr=False)

    @classmethod
    def of(cls, b: PortBinding) -> PortMapping:
        """A published binding (one host port, host_ip and container_ip set) as a mapping."""
        return cls(
            b.protocol,
            ipaddress.ip_address(b.host_ip),
            b.host_port,
            ipaddress.ip_address(b.container_ip),
            b.container_port,
            b,
        )

    @property
    def key(self) -> MappingKey:
        return (self.host_ip, self.protocol, self.host_port)

    @property
    def version(self) -> int:
        return self.host_ip.version

    @property
    def all_addresses(self) -> bool:
        return self.host_ip.is_unspecified

    def host_binding(self) -> str:
        """'0.0.0.0:8080' / '[::1]:8080', the form libnetwork's messages use."""
        host = f"[{self.host_ip}]" if self.version == 6 else str(self.host_ip)
        return f"{host}:{self.host_port}"

    def __str__(self) -> str:
        target = f"[{self.container_ip}]" if self.version == 6 else str(self.container_ip)
        return f"{self.host_binding()}/{self.protocol} -> {target}:{self.container_port}"


@dataclass(frozen=True)
class FirewallState:
    """Everything the firewall keeps in the kernel, as one immutable value.

    `ports` pairs a bridge port (the host end of a sandbox's veth) with its
    network id. A driver restarting rebuilds this from its store and hands it
    to `Firewall.load`, which makes the kernel match in one sync.
    """

    networks: tuple[BridgeNetwork, ...] = ()
    ports: tuple[tuple[str, str], ...] = ()
    # Published bindings, taken as they are (`PortMapping.of`).
    mappings: tuple[PortBinding, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.networks and not self.mappings


def _net_sort_key(net: IPNetwork) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def mapping_sort_key(m: PortMapping) -> tuple[int, int, str, int]:
    return (m.version, int(m.host_ip), m.protocol, m.host_port)
