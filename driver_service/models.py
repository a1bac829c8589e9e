"""The driver service's domain values: requests as typed values, and records.

Frozen dataclasses, free of grpc and protobuf (conversion lives in
`convert.py`). Addresses are kept as normalised strings ("172.18.0.2/16") so
that a record round-trips through JSON (`services.values.codec`) unchanged;
`validate_*` functions in `specs.py` produce them from raw input.

Records carry a `state` so that the store holds intent before a kernel change
and completion after it (see `state.py` and `reconcile.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.values.dns import DnsConfig, ExtraHost
from services.values.ports import ExposedPort, PortBinding

# Record states: written before the kernel change ("creating", "joining",
# "leaving", "deleting") and after it ("ready", "joined").
CREATING = "creating"
READY = "ready"
DELETING = "deleting"
JOINING = "joining"
JOINED = "joined"
LEAVING = "leaving"

SCOPE_LOCAL = "local"
SCOPE_GLOBAL = "global"


@dataclass(frozen=True)
class IpamData:
    """One IPAM pool of a network (libnetwork's IPAMData)."""

    pool: str
    # CIDR form with the pool's prefix length, e.g. "172.18.0.1/16"; "" for none.
    gateway: str = ""
    address_space: str = ""
    aux_addresses: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkSpec:
    network_id: str
    name: str
    driver: str
    options: Mapping[str, str] = field(default_factory=dict)
    ipv4: tuple[IpamData, ...] = ()
    ipv6: tuple[IpamData, ...] = ()
    internal: bool = False
    enable_ipv6: bool = False


@dataclass(frozen=True)
class NetworkRecord:
    spec: NetworkSpec
    state: str
    # What the driver decided before touching the kernel (e.g. the bridge
    # name, the MTU): reconciliation needs it to find and remove the objects.
    data: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.spec.network_id


@dataclass(frozen=True)
class StaticRoute:
    destination: str
    # "" for a connected route
    next_hop: str = ""


@dataclass(frozen=True)
class EndpointSpec:
    network_id: str
    endpoint_id: str
    # CIDR form; "" when absent
    address: str = ""
    address_ipv6: str = ""
    # "" asks the driver to choose
    mac: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    port_bindings: tuple[PortBinding, ...] = ()
    exposed_ports: tuple[ExposedPort, ...] = ()
    name: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attachment:
    """An endpoint joined (or being joined) to a sandbox."""

    sandbox_id: str
    state: str
    # The interface inside the sandbox ("eth0"); "" for drivers that make none.
    ifname: str = ""
    # The host end of the veth; "" when there is none.
    host_ifname: str = ""
    # Gateways this endpoint offers (no prefix); "" for none.
    gateway: str = ""
    gateway_ipv6: str = ""
    # True when this endpoint carries the sandbox's default route(s).
    default_route: bool = False
    # Join order within the sandbox: decides the primary endpoint and who
    # takes over the default route when the current one leaves.
    seq: int = 0
    static_routes: tuple[StaticRoute, ...] = ()
    port_bindings: tuple[PortBinding, ...] = ()
    # The Join call's options (libnetwork's join options), for the driver.
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointRecord:
    spec: EndpointSpec
    # The MAC in use (given, or chosen by the driver); "" when there is none.
    mac: str = ""
    attachment: Attachment | None = None

    @property
    def id(self) -> str:
        return self.spec.endpoint_id

    @property
    def network_id(self) -> str:
        return self.spec.network_id


@dataclass(frozen=True)
class SandboxSpec:
    sandbox_id: str
    name: str = ""
    hostname: str = ""
    domainname: str = ""
    dns: DnsConfig = DnsConfig()
    extra_hosts: tuple[ExtraHost, ...] = ()
    # A namespace file the runtime owns; "" when cnm creates the namespace.
    external_key: str = ""
    # The runtime moves interfaces into its namespace itself (Docker): cnm never
    # enters the namespace; Join leaves the container end in the host namespace.
    runtime_moves_interfaces: bool = False
    # Host networking (Docker's --network host): the sandbox is the namespace
    # this driver serves; nothing is created, plumbed or deleted in it.
    host_network: bool = False


@dataclass(frozen=True)
class SandboxRecord:
    spec: SandboxSpec
    state: str
    # The namespace path (libnetwork's sandbox key).
    key: str
    # Name under /run/netns when cnm created it; "" for an adopted namespace.
    netns_name: str
    hosts_path: str
    resolv_conf_path: str

    @property
    def id(self) -> str:
        return self.spec.sandbox_id


@dataclass(frozen=True)
class JoinResult:
    """What a driver reports for a Join (libnetwork's JoinInfo)."""

    interface_name: str = ""
    gateway: str = ""
    gateway_ipv6: str = ""
    static_routes: tuple[StaticRoute, ...] = ()
    port_bindings: tuple[PortBinding, ...] = ()
    mac: str = ""
    host_interface_name: str = ""


@dataclass(frozen=True)
class Capability:
    name: str
    scope: str
    error: str = ""


@dataclass(frozen=True)
class InterfaceView:
    name: str
    mac: str
    mtu: int
    addresses: tuple[str, ...]
    up: bool


@dataclass(frozen=True)
class RouteView:
    destination: str
    gateway: str
    interface: str


@dataclass(frozen=True)
class SandboxView:
    sandbox: SandboxRecord
    interfaces: tuple[InterfaceView, ...] = ()
    routes: tuple[RouteView, ...] = ()
