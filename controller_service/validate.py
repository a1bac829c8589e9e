"""Validation of create requests, done once before anything is allocated.

Every function raises InvalidArgument naming the field and the bad value, or
returns the spec normalised (defaults filled, addresses in canonical form).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping

from controller_service.models import (
    EndpointSpec,
    IpamConfig,
    NetworkSpec,
    SandboxSpec,
)
from services.errors import InvalidArgument
from services.ids import validate_name
from services.limits import shown
from services.values import cidr, dns, names, ports
from services.values import mac as values_mac

DEFAULT_DRIVER = "bridge"
# Built-in IPAM drivers: "default" (cnm's IPAM service) and "null" (no addresses).
# Any other name is a remote IPAM plugin, which the IPAM service looks up.
IPAM_DEFAULT = "default"
IPAM_NULL = "null"

_DRIVER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,254}$")
_IPAM_PLUGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _bad(field: str, value: object, why: str) -> InvalidArgument:
    reason, proto_field = _blame(field)
    return InvalidArgument(
        f"invalid {field} {shown(value)}: {why}", reason=reason, field=proto_field
    )


def _blame(field: str) -> tuple[str, str]:
    """The reason for a bad `field`, and the field itself when it is a proto
    field name (sent as a google.rpc.BadRequest field violation)."""
    return "INVALID_" + _reason(field), field if re.fullmatch(r"[a-z0-9_]+", field) else ""


def _reason(field: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", field.upper()).strip("_")


def _keys(field: str, mapping: Mapping[str, str]) -> dict[str, str]:
    for key in mapping:
        if not key or key != key.strip():
            raise _bad(f"{field} key", key, "keys must be non-empty without surrounding spaces")
    return dict(mapping)


# ------------------------------------------------------------------ networks


# Network options every driver honours; their values are checked here, once.
LEGACY_HOSTS_OPTION = "cnm.network.legacy_hosts"
_BOOL_VALUES = ("true", "false", "1", "0", "yes", "no", "on", "off")


def _bool_options(options: Mapping[str, str]) -> None:
    value = options.get(LEGACY_HOSTS_OPTION)
    if value is not None and value.strip().lower() not in _BOOL_VALUES:
        raise _bad("option", f"{LEGACY_HOSTS_OPTION}={value}", "expected true or false")


# libnetwork's network option naming its interfaces in sandboxes (driver side:
# driver_service.constants); a prefix plus up to two digits fits IFNAMSIZ.
CONTAINER_IFACE_PREFIX = "com.docker.network.container_iface_prefix"
_IFACE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,12}$")


def network_spec(spec: NetworkSpec) -> NetworkSpec:
    validate_name("network", spec.name)
    _bool_options(spec.options)
    prefix = spec.options.get(CONTAINER_IFACE_PREFIX)
    if prefix is not None and not _IFACE_PREFIX.match(prefix):
        raise InvalidArgument(
            f"invalid option {CONTAINER_IFACE_PREFIX}={shown(prefix)}: expected 1-13 letters, "
            "digits and _.- starting with a letter (the interfaces are PREFIX0, PREFIX1...)",
            reason="INVALID_OPTION",
            metadata={"option": CONTAINER_IFACE_PREFIX},
        )
    driver = spec.driver or DEFAULT_DRIVER
    if not _DRIVER.match(driver):
        raise _bad("driver name", driver, "expected letters, digits and _.:/-")
    ipam_driver = spec.ipam.driver or IPAM_DEFAULT
    if not _IPAM_PLUGIN.match(ipam_driver):
        raise _bad("IPAM driver name", ipam_driver, "expected letters, digits and _.-")
    if ipam_driver == IPAM_NULL and spec.ipam.configs:
        raise InvalidArgument("IPAM driver 'null' takes no subnets", reason="INVALID_IPAM")
    configs = tuple(ipam_config(c) for c in spec.ipam.configs)
    _no_overlaps(configs)
    if not spec.enable_ipv6:
        for c in configs:
            if c.subnet and ipaddress.ip_network(c.subnet).version == 6:
                raise InvalidArgument(
                    f"IPv6 subnet {c.subnet} given but enable_ipv6 is false",
                    reason="INVALID_IPAM",
                )
    return dataclasses.replace(
        spec,
        driver=driver,
        ipam=dataclasses.replace(
            spec.ipam,
            driver=ipam_driver,
            options=_keys("ipam option", spec.ipam.options),
            configs=configs,
        ),
        options=_keys("option", spec.options),
        labels=_keys("label", spec.labels),
    )


def ipam_config(cfg: IpamConfig) -> IpamConfig:
    if not cfg.subnet:
        if cfg.ip_range or cfg.gateway or cfg.aux_addresses:
            raise InvalidArgument(
                "ip_range, gateway and aux_addresses need a subnet", reason="INVALID_IPAM"
            )
        return cfg
    subnet = _network("subnet", cfg.subnet)
    ip_range = ""
    if cfg.ip_range:
        rng = _network("ip_range", cfg.ip_range)
        if rng.version != subnet.version or not rng.subnet_of(subnet):  # type: ignore[arg-type]
            raise _bad("ip_range", cfg.ip_range, f"not inside subnet {subnet}")
        ip_range = str(rng)
    gateway = ""
    if cfg.gateway:
        gateway = str(_host_in("gateway", cfg.gateway, subnet))
    aux: dict[str, str] = {}
    for name, addr in cfg.aux_addresses.items():
        if not name:
            raise _bad("aux address name", name, "must not be empty")
        aux[name] = str(_host_in(f"aux address {name!r}", addr, subnet))
    return IpamConfig(subnet=str(subnet), ip_range=ip_range, gateway=gateway, aux_addresses=aux)


def _network(field: str, text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    reason, proto_field = _blame(field)
    return cidr.network(text, what=field, reason=reason, field=proto_field)


def _host_in(
    field: str, text: str, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = address(field, text)
    if addr.version != subnet.version or addr not in subnet:
        raise _bad(field, text, f"not inside subnet {subnet}")
    if addr == subnet.network_address and subnet.num_addresses > 2:
        raise _bad(field, text, "is the subnet's network address")
    if subnet.version == 4 and subnet.num_addresses > 2 and addr == subnet.broadcast_address:
        raise _bad(field, text, "is the subnet's broadcast address")
    return addr


def _no_overlaps(configs: Iterable[IpamConfig]) -> None:
    seen: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for c in configs:
        if not c.subnet:
            continue
        net = ipaddress.ip_network(c.subnet)
        for other in seen:
            if net.version == other.version and net.overlaps(other):  # type: ignore[arg-type]
                raise _bad("subnet", c.subnet, f"overlaps subnet {other} of the same network")
        seen.append(net)


def address(field: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address without prefix length."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise _bad(field, text, "not an IP address (give it without a prefix length)") from None


# ------------------------------------------------------------------ endpoints


def static_address(field: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A requested endpoint address, bare ("10.0.0.5") or in the CIDR form the
    API returns ("10.0.0.5/24"); the prefix length is the subnet's either way."""
    try:
        return ipaddress.ip_interface(text).ip
    except ValueError:
        raise _bad(field, text, "not an IP address") from None


def endpoint_spec(spec: EndpointSpec) -> EndpointSpec:
    if spec.name:
        validate_name("endpoint", spec.name)
    ipv4 = ipv6 = ""
    if spec.ipv4_address:
        a = static_address("ipv4_address", spec.ipv4_address)
        if a.version != 4:
            raise _bad("ipv4_address", spec.ipv4_address, "not an IPv4 address")
        ipv4 = str(a)
    if spec.ipv6_address:
        a = static_address("ipv6_address", spec.ipv6_address)
        if a.version != 6:
            raise _bad("ipv6_address", spec.ipv6_address, "not an IPv6 address")
        ipv6 = str(a)
    mac = values_mac.mac_address(spec.mac_address) if spec.mac_address else ""
    return dataclasses.replace(
        spec,
        ipv4_address=ipv4,
        ipv6_address=ipv6,
        mac_address=mac,
        aliases=tuple(dict.fromkeys(names.alias(a) for a in spec.aliases)),
        port_bindings=tuple(ports.validate_binding(b) for b in spec.port_bindings),
        exposed_ports=tuple(ports.validate_exposed(p) for p in spec.exposed_ports),
        options=_keys("endpoint option", spec.options),
    )


# ------------------------------------------------------------------ sandboxes


def sandbox_spec(spec: SandboxSpec) -> SandboxSpec:
    if spec.name:
        validate_name("sandbox", spec.name)
    if spec.hostname:
        names.hostname(spec.hostname)
    if spec.domainname:
        names.domainname(spec.domainname)
    if spec.external_key and not spec.external_key.startswith("/"):
        raise _bad("external_key", spec.external_key, "expected an absolute namespace path")
    if len(spec.container_id) > 256 or any(c.isspace() for c in spec.container_id):
        raise _bad("container_id", spec.container_id, "at most 256 characters, no spaces")
    if spec.host_network and (spec.external_key or spec.runtime_moves_interfaces):
        other = "external_key" if spec.external_key else "runtime_moves_interfaces"
        raise _bad("host_network", True, f"the host's own namespace cannot take {other}")
    return dataclasses.replace(
        spec,
        dns=dns.validate_dns(spec.dns),
        extra_hosts=tuple(dns.validate_extra_host(h) for h in spec.extra_hosts),
        labels=_keys("label", spec.labels),
    )
