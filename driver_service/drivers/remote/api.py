"""libnetwork's remote network driver API: request bodies and response parsing.

Pure: records in, JSON-ready dicts out; plugin responses in, typed values (or
a FailedPrecondition naming the plugin and the bad field) out. The field names
and value shapes are libnetwork's (`drivers/remote/api`), so that a plugin
written for Docker sees exactly what Docker would send:

- CreateNetwork {NetworkID, Options, IPv4Data, IPv6Data}; Options carries
  "com.docker.network.generic" (the network's driver options),
  "com.docker.network.enable_ipv6" and, when set, "com.docker.network.internal";
  IPAMData {AddressSpace, Pool, Gateway (CIDR, left out when none),
  AuxAddresses}; an empty IPv6Data is `null`, as Go encodes a nil slice.
- CreateEndpoint {NetworkID, EndpointID, Options, Interface {Address,
  AddressIPv6, MacAddress}} (all three keys, "" when unset); Options has the
  endpoint's options plus "com.docker.network.portmap" and
  "com.docker.network.endpoint.exposedports" when there are any.
- Join {NetworkID, EndpointID, SandboxKey, Options}; Leave, DeleteEndpoint and
  EndpointOperInfo {NetworkID, EndpointID}; DeleteNetwork {NetworkID}.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from driver_service.models import EndpointSpec, IpamData, NetworkSpec, StaticRoute
from services.errors import FailedPrecondition
from services.plugins import text_map

GENERIC = "com.docker.network.generic"
ENABLE_IPV6 = "com.docker.network.enable_ipv6"
INTERNAL = "com.docker.network.internal"
PORT_MAP = "com.docker.network.portmap"
EXPOSED_PORTS = "com.docker.network.endpoint.exposedports"

# libnetwork's types.NEXTHOP and types.CONNECTED.
ROUTE_NEXTHOP = 0
ROUTE_CONNECTED = 1

_PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}
_IFNAME = re.compile(r"[^/\s:]{1,15}")
SCOPES = ("local", "global")


def bad_response(plugin: str, method: str, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"plugin {plugin!r}: {method}: invalid response: {why}",
        reason="PLUGIN_BAD_RESPONSE",
        metadata={"plugin": plugin, "method": method},
    )


# --- capabilities ----------------------------------------------------------------------------


def negotiate_scope(plugin: str, response: Mapping[str, Any]) -> str:
    """The "Scope" of a GetCapabilities answer: "local" or "global", else
    libnetwork's refusal (case-sensitive, extra fields ignored)."""
    raw = response.get("Scope")
    if raw in SCOPES:
        return str(raw)
    shown = raw if isinstance(raw, str) else ("" if raw is None else json.dumps(raw))
    raise FailedPrecondition(
        f"invalid capability: expecting 'local' or 'global', got {shown}",
        reason="INVALID_CAPABILITY",
        metadata={"plugin": plugin},
    )


# --- requests --------------------------------------------------------------------------------


def ipam_data(d: IpamData) -> dict[str, Any]:
    out: dict[str, Any] = {"AddressSpace": d.address_space, "Pool": d.pool}
    if d.gateway:
        out["Gateway"] = d.gateway
    out["AuxAddresses"] = dict(d.aux_addresses)
    return out


def create_network(spec: NetworkSpec) -> dict[str, Any]:
    options: dict[str, Any] = {GENERIC: dict(spec.options), ENABLE_IPV6: spec.enable_ipv6}
    if spec.internal:
        options[INTERNAL] = True
    return {
        "NetworkID": spec.network_id,
        "Options": options,
        "IPv4Data": [ipam_data(d) for d in spec.ipv4] or None,
        "IPv6Data": [ipam_data(d) for d in spec.ipv6] or None,
    }


def _bare(cidr: str) -> str:
    return str(ipaddress.ip_interface(cidr).ip) if cidr else ""


def create_endpoint(spec: EndpointSpec, mac: str) -> dict[str, Any]:
    options: dict[str, Any] = dict(spec.options)
    if spec.port_bindings:
        options[PORT_MAP] = [
            {
                "Proto": _PROTO_NUMBERS.get(p.protocol, 0),
                "IP": p.container_ip or _bare(spec.address),
                "Port": p.container_port,
                "HostIP": p.host_ip,
                "HostPort": p.host_port,
                "HostPortEnd": p.host_port_end or p.host_port,
            }
            for p in spec.port_bindings
        ]
    if spec.exposed_ports:
        options[EXPOSED_PORTS] = [
            {"Proto": _PROTO_NUMBERS.get(e.protocol, 0), "Port": e.port} for e in spec.exposed_ports
        ]
    return {
        "NetworkID": spec.network_id,
        "EndpointID": spec.endpoint_id,
        "Options": options,
        "Interface": {
            "Address": spec.address,
            "AddressIPv6": spec.address_ipv6,
            "MacAddress": mac,
        },
    }


def endpoint_ref(network_id: str, endpoint_id: str) -> dict[str, str]:
    """The body of Leave, DeleteEndpoint and EndpointOperInfo."""
    return {"NetworkID": network_id, "EndpointID": endpoint_id}


def join(
    network_id: str,
    endpoint_id: str,
    sandbox_key: str,
    options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "NetworkID": network_id,
        "EndpointID": endpoint_id,
        "SandboxKey": sandbox_key,
        "Options": dict(options or {}),
    }


# --- responses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointInterface:
    """An endpoint's addressing after CreateEndpoint (CIDR forms; "" for none)."""

    address: str = ""
    address_ipv6: str = ""
    mac: str = ""


def _cidr(plugin: str, method: str, field: str, value: Any, version: int) -> str:
    try:
        iface = ipaddress.ip_interface(value)
    except (TypeError, ValueError):
        raise bad_response(plugin, method, f"{field} {value!r} is not an address") from None
    if iface.version != version or "/" not in str(value):
        raise bad_response(plugin, method, f"{field} {value!r} is not an IPv{version} CIDR")
    return str(iface)


def _mac(plugin: str, method: str, value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}", value):
        raise bad_response(plugin, method, f"MacAddress {value!r} is not a MAC address")
    return value.lower()


def endpoint_interface(
    plugin: str, response: Mapping[str, Any], sent: EndpointInterface
) -> EndpointInterface:
    """Merge the plugin's "Interface" into what was sent.

    As in libnetwork, a plugin may fill a field only when it was sent empty;
    returning a different value for a field that was given is an error
    (an identical echo is accepted).
    """
    raw = response.get("Interface")
    if raw is None:
        return sent
    if not isinstance(raw, Mapping):
        raise bad_response(plugin, "CreateEndpoint", "Interface is not an object")
    got = {
        "address": _cidr(plugin, "CreateEndpoint", "Address", raw["Address"], 4)
        if raw.get("Address")
        else "",
        "address_ipv6": _cidr(plugin, "CreateEndpoint", "AddressIPv6", raw["AddressIPv6"], 6)
        if raw.get("AddressIPv6")
        else "",
        "mac": _mac(plugin, "CreateEndpoint", raw["MacAddress"]) if raw.get("MacAddress") else "",
    }
    labels = {"address": "address", "address_ipv6": "IPv6 address", "mac": "MAC address"}
    merged = {}
    for field, value in got.items():
        given = getattr(sent, field)
        if value and given and value != given:
            raise FailedPrecondition(
                f"plugin {plugin!r}: CreateEndpoint: driver modified interface "
                f"{labels[field]}: {given} was given, the plugin returned {value}",
                reason="PLUGIN_BAD_RESPONSE",
                metadata={"plugin": plugin, "method": "CreateEndpoint"},
            )
        merged[field] = given or value
    return EndpointInterface(**merged)


@dataclass(frozen=True)
class JoinReply:
    # The plugin's link in the host namespace, and the name prefix inside the
    # sandbox; both "" when the plugin gives no interface.
    src_name: str = ""
    dst_prefix: str = ""
    gateway: str = ""
    gateway_ipv6: str = ""
    routes: tuple[StaticRoute, ...] = ()


def _ip(plugin: str, field: str, value: Any, version: int) -> str:
    try:
        ip = ipaddress.ip_address(value)
    except (TypeError, ValueError):
        raise bad_response(plugin, "Join", f'unable to parse {field} "{value}"') from None
    if ip.version != version:
        raise bad_response(plugin, "Join", f"{field} {value!r} is not an IPv{version} address")
    return str(ip)


def join_reply(plugin: str, response: Mapping[str, Any]) -> JoinReply:
    src = prefix = ""
    names = response.get("InterfaceName")
    if names is not None:
        if not isinstance(names, Mapping):
            raise bad_response(plugin, "Join", "InterfaceName is not an object")
        src, prefix = names.get("SrcName") or "", names.get("DstPrefix") or ""
        if not isinstance(src, str) or not _IFNAME.fullmatch(src):
            raise bad_response(plugin, "Join", f"SrcName {src!r} is not an interface name")
        if not isinstance(prefix, str) or (
            prefix and not re.fullmatch(r"[A-Za-z_-]{1,12}", prefix)
        ):
            raise bad_response(plugin, "Join", f"DstPrefix {prefix!r} is not a name prefix")
    gw4 = _ip(plugin, "Gateway", response["Gateway"], 4) if response.get("Gateway") else ""
    gw6 = (
        _ip(plugin, "GatewayIPv6", response["GatewayIPv6"], 6)
        if response.get("GatewayIPv6")
        else ""
    )
    routes = []
    for raw in response.get("StaticRoutes") or ():
        if not isinstance(raw, Mapping):
            raise bad_response(plugin, "Join", "a StaticRoutes entry is not an object")
        try:
            dest = ipaddress.ip_network(raw.get("Destination", ""), strict=False)
        except (TypeError, ValueError):
            raise bad_response(
                plugin, "Join", f"route destination {raw.get('Destination')!r} is not a CIDR"
            ) from None
        kind = raw.get("RouteType", ROUTE_NEXTHOP)
        if kind == ROUTE_NEXTHOP:
            hop = _ip(plugin, "NextHop", raw.get("NextHop"), dest.version)
            routes.append(StaticRoute(destination=str(dest), next_hop=hop))
        elif kind == ROUTE_CONNECTED:
            if not src:
                raise bad_response(plugin, "Join", f"connected route {dest} without an interface")
            routes.append(StaticRoute(destination=str(dest)))
        else:
            raise bad_response(plugin, "Join", f"unknown RouteType {kind!r} for {dest}")
    return JoinReply(src, prefix, gw4, gw6, tuple(routes))


def oper_value(plugin: str, response: Mapping[str, Any]) -> dict[str, str]:
    """EndpointOperInfo's "Value", as strings (non-string values JSON-encoded)."""
    value = response.get("Value")
    if value is not None and not isinstance(value, Mapping):
        raise bad_response(plugin, "EndpointOperInfo", "Value is not an object")
    return text_map(value or {})
