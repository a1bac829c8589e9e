"""Validation of every request value before anything touches the kernel or the store.

Each function takes a spec built by `convert.py` from a request and returns it
normalised (addresses in canonical CIDR text, MACs lower case), or raises
InvalidArgument naming the bad value. Driver-specific options are checked by
the driver itself (`Driver.plan_network`), also before any kernel step.
"""

from __future__ import annotations

import dataclasses
import re

from driver_service.constants import ENDPOINT_DEFAULT_ROUTE_OPTION, ENDPOINT_IFNAME_OPTION
from driver_service.models import (
    EndpointSpec,
    IpamData,
    NetworkSpec,
    SandboxSpec,
)
from driver_service.osl import validate
from services.errors import InvalidArgument
from services.ids import validate_name
from services.limits import shown
from services.values import cidr, dns, mac, names, ports

_FULL_ID = re.compile(r"[0-9a-f]{64}")


def object_id(kind: str, value: str) -> str:
    """A full libnetwork id: 64 lower-case hex characters."""
    if not isinstance(value, str) or not _FULL_ID.fullmatch(value):
        raise InvalidArgument(
            f"invalid {kind} id {shown(value)}: expected 64 hex characters", reason="INVALID_ID"
        )
    return value


def _interface(value: str, version: int, what: str) -> str:
    iface = validate.ip_interface(value, what)
    if iface.version != version:
        raise InvalidArgument(f"invalid {what} {shown(value)}: not an IPv{version} address")
    return str(iface)


def _ipam(data: IpamData, version: int) -> IpamData:
    pool = cidr.network(data.pool, what=f"IPv{version} pool")
    if pool.version != version:
        raise InvalidArgument(f"invalid IPv{version} pool {shown(data.pool)}: wrong address family")
    gateway = ""
    if data.gateway:
        gw = validate.ip_interface(data.gateway, f"gateway of pool {pool}")
        if gw.version != version or gw.ip not in pool:
            raise InvalidArgument(f"gateway {shown(data.gateway)} is not inside pool {pool}")
        # The gateway carries the pool's prefix: it becomes the bridge's subnet route.
        gateway = f"{gw.ip}/{pool.prefixlen}"
    aux = {}
    for name, addr in data.aux_addresses.items():
        ip = validate.ip_interface(addr if "/" in addr else f"{addr}/{pool.prefixlen}", name)
        if ip.ip not in pool:
            raise InvalidArgument(f"aux address {name}={shown(addr)} is not inside pool {pool}")
        aux[name] = str(ip)
    return IpamData(
        pool=str(pool), gateway=gateway, address_space=data.address_space, aux_addresses=aux
    )


def network_spec(spec: NetworkSpec) -> NetworkSpec:
    object_id("network", spec.network_id)
    if spec.name:
        validate_name("network", spec.name)
    if not spec.driver:
        raise InvalidArgument("no driver given for network", reason="INVALID_DRIVER")
    ipv4 = tuple(_ipam(d, 4) for d in spec.ipv4)
    ipv6 = tuple(_ipam(d, 6) for d in spec.ipv6)
    return dataclasses.replace(spec, ipv4=ipv4, ipv6=ipv6, options=dict(spec.options))


def endpoint_spec(spec: EndpointSpec) -> EndpointSpec:
    object_id("network", spec.network_id)
    object_id("endpoint", spec.endpoint_id)
    if spec.name:
        validate_name("endpoint", spec.name)
    aliases = tuple(names.alias(a) for a in spec.aliases)
    if ENDPOINT_IFNAME_OPTION in spec.options:
        validate.ifname(spec.options[ENDPOINT_IFNAME_OPTION], "requested interface name")
    if spec.options.get(ENDPOINT_DEFAULT_ROUTE_OPTION, "true") not in ("true", "false"):
        raise InvalidArgument(
            f"invalid endpoint option {ENDPOINT_DEFAULT_ROUTE_OPTION}="
            f"{spec.options[ENDPOINT_DEFAULT_ROUTE_OPTION][:64]!r}: expected true or false"
        )
    return dataclasses.replace(
        spec,
        address=_interface(spec.address, 4, "endpoint address") if spec.address else "",
        address_ipv6=_interface(spec.address_ipv6, 6, "endpoint IPv6 address")
        if spec.address_ipv6
        else "",
        mac=mac.mac_address(spec.mac) if spec.mac else "",
        options=dict(spec.options),
        port_bindings=tuple(ports.validate_binding(p) for p in spec.port_bindings),
        exposed_ports=tuple(ports.validate_exposed(p) for p in spec.exposed_ports),
        aliases=aliases,
    )


def sandbox_spec(spec: SandboxSpec) -> SandboxSpec:
    object_id("sandbox", spec.sandbox_id)
    if spec.name:
        validate_name("sandbox", spec.name)
    if spec.hostname:
        names.hostname(spec.hostname)
    if spec.domainname:
        names.domainname(spec.domainname)
    if spec.host_network and (spec.external_key or spec.runtime_moves_interfaces):
        raise InvalidArgument(
            "host_network cannot be combined with "
            + ("external_key" if spec.external_key else "runtime_moves_interfaces")
            + ": a host-networked sandbox is the host's own namespace",
            reason="INVALID_HOST_NETWORK",
            field="host_network",
        )
    return dataclasses.replace(
        spec,
        dns=dns.validate_dns(spec.dns),
        extra_hosts=tuple(dns.validate_extra_host(h) for h in spec.extra_hosts),
    )
