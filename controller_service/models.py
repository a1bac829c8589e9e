"""The controller's object model: frozen dataclasses, stored in Redis as JSON.

Records carry their own lifecycle (`state`) and, while an operation is in
flight, the controller instance doing it (`owner`) and since when
(`op_since`): that is the intent the reconciler finishes or rolls back when
the owner dies. Nothing here imports grpc or generated stubs.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

# The stored form of these records (re-exported for the store).
from services.values.codec import from_json as from_json
from services.values.codec import to_json as to_json
from services.values.dns import DnsConfig, ExtraHost
from services.values.ports import ExposedPort, PortBinding

T = TypeVar("T")


class Scope(enum.StrEnum):
    LOCAL = "local"
    GLOBAL = "global"


class State(enum.StrEnum):
    """Lifecycle of networks and sandboxes."""

    CREATING = "creating"
    READY = "ready"
    DELETING = "deleting"


class EndpointState(enum.StrEnum):
    # Intent recorded; addresses and driver state being allocated.
    CREATING = "creating"
    READY = "ready"
    # Join in flight: the sandbox is claimed, the driver not yet done.
    JOINING = "joining"
    JOINED = "joined"
    # Leave in flight.
    LEAVING = "leaving"
    DELETING = "deleting"


class HostState(enum.StrEnum):
    READY = "ready"
    UNREACHABLE = "unreachable"


# ------------------------------------------------------------------ value types


@dataclass(frozen=True)
class IpamConfig:
    subnet: str = ""
    ip_range: str = ""
    gateway: str = ""
    aux_addresses: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IpamSpec:
    driver: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    configs: tuple[IpamConfig, ...] = ()


@dataclass(frozen=True)
class PoolAllocation:
    """One IPAM pool a network holds, with what was reserved in it."""

    pool_id: str
    subnet: str
    v6: bool = False
    ip_range: str = ""
    # CIDR form with the pool's prefix length; empty when none was allocated.
    gateway: str = ""
    # name -> CIDR
    aux_addresses: Mapping[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------ requests


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    driver: str = "bridge"
    ipam: IpamSpec = IpamSpec()
    internal: bool = False
    enable_ipv6: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    host: str = ""
    # Docker's --config-only / --config-from (name of a config-only network).
    config_only: bool = False
    config_from: str = ""
    attachable: bool = False
    # Docker's --scope; None: the driver's.
    scope: Scope | None = None


@dataclass(frozen=True)
class EndpointSpec:
    name: str = ""
    ipv4_address: str = ""
    ipv6_address: str = ""
    mac_address: str = ""
    aliases: tuple[str, ...] = ()
    port_bindings: tuple[PortBinding, ...] = ()
    exposed_ports: tuple[ExposedPort, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxSpec:
    name: str = ""
    container_id: str = ""
    host: str = ""
    hostname: str = ""
    domainname: str = ""
    dns: DnsConfig = DnsConfig()
    extra_hosts: tuple[ExtraHost, ...] = ()
    external_key: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    # The runtime moves interfaces into its namespace itself (Docker).
    runtime_moves_interfaces: bool = False
    # Docker's --network host: the sandbox is its host's own namespace.
    host_network: bool = False


@dataclass(frozen=True)
class NetworkFilter:
    """AND across fields, OR within one field (labels: all must match); empty
    fields match everything."""

    names: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    drivers: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    scopes: tuple[Scope, ...] = ()
    types: tuple[str, ...] = ()  # "builtin" | "custom"
    dangling: bool | None = None


# ------------------------------------------------------------------ records


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str
    scope: Scope
    ipam: IpamSpec = IpamSpec()
    internal: bool = False
    enable_ipv6: bool = False
    options: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    created: float = 0.0
    # The host of a local-scope network; "" for global scope.
    host: str = ""
    pools: tuple[PoolAllocation, ...] = ()
    state: State = State.CREATING
    owner: str = ""
    op_since: float = 0.0
    # A configuration network: `ipam` is the configuration it holds (nothing
    # allocated), driver "null", no host, no endpoints.
    config_only: bool = False
    # The config-only network this one took its configuration from.
    config_from: str = ""
    attachable: bool = False


@dataclass(frozen=True)
class Endpoint:
    id: str
    name: str
    network_id: str
    network_name: str
    sandbox_id: str = ""
    ipv4_address: str = ""  # CIDR
    ipv6_address: str = ""  # CIDR
    mac_address: str = ""
    aliases: tuple[str, ...] = ()
    port_bindings: tuple[PortBinding, ...] = ()
    published_ports: tuple[PortBinding, ...] = ()
    exposed_ports: tuple[ExposedPort, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)
    state: EndpointState = EndpointState.CREATING
    # The host whose driver service holds this endpoint ("" until known).
    host: str = ""
    gateway: str = ""
    gateway_ipv6: str = ""
    interface_name: str = ""
    host_interface_name: str = ""
    # Created by Connect for a sandbox: deleted with that sandbox, as Docker
    # deletes a container's endpoints with the container.
    implicit: bool = False
    created: float = 0.0
    owner: str = ""
    op_since: float = 0.0


@dataclass(frozen=True)
class Sandbox:
    id: str
    name: str
    host: str
    container_id: str = ""
    hostname: str = ""
    domainname: str = ""
    dns: DnsConfig = DnsConfig()
    extra_hosts: tuple[ExtraHost, ...] = ()
    external_key: str = ""
    runtime_moves_interfaces: bool = False
    host_network: bool = False
    key: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    created: float = 0.0
    state: State = State.CREATING
    # Set when garbage collection deletes the sandbox: every endpoint joined
    # to it goes too, not only those Connect made.
    purge_endpoints: bool = False
    owner: str = ""
    op_since: float = 0.0
    # Not decided here: its host reported its network namespace gone (a
    # reboot); filled in when the sandbox is read for the API.
    lost: bool = False

    @property
    def external(self) -> bool:
        return bool(self.external_key)


@dataclass(frozen=True)
class DriverCap:
    name: str
    scope: Scope | None = None
    error: str = ""


@dataclass(frozen=True)
class Host:
    id: str
    address: str
    advertise_address: str = ""
    drivers: tuple[DriverCap, ...] = ()
    last_heartbeat: float = 0.0
    ttl: float = 10.0
    state: HostState = HostState.UNREACHABLE


@dataclass(frozen=True)
class DriverInfo:
    name: str
    scope: Scope | None
    hosts: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class SubnetStatus:
    subnet: str
    ips_in_use: int
    dynamic_ips_available: int


@dataclass(frozen=True)
class PoolUsage:
    pool_id: str
    address_space: str
    pool: str
    sub_pool: str
    owner: str
    used: int
    free: int


@dataclass(frozen=True)
class Event:
    revision: int
    type: str  # e.g. "network_created" (events.EventType values)
    time: float
    id: str
    name: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_token: str = ""


@dataclass(frozen=True)
class GcResult:
    removed_sandbox_ids: tuple[str, ...] = ()
    removed_endpoint_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class JoinResult:
    """What a driver reports after plumbing an endpoint into a sandbox."""

    interface_name: str = ""
    gateway: str = ""
    gateway_ipv6: str = ""
    mac_address: str = ""
    published_ports: tuple[PortBinding, ...] = ()
    host_interface_name: str = ""


@dataclass(frozen=True)
class SandboxPaths:
    """Where a driver service put a sandbox: its namespace and its files."""

    key: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""
