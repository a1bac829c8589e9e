"""libnetwork's remote plugin protocol, plugin side: request fields in, answers out.

Pure (no I/O): the HTTP server hands each decoded JSON body to a handler and
sends back what it returns. Field names are libnetwork's (`drivers/remote/api`
and `ipams/remote/api`); driver_service/drivers/remote/api.py is the client
side of the same protocol.

Errors: a handler raises `PluginError` (or a clients.errors class); the server
answers `{"Err": message}`, which Docker shows as `remote: <message>`.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cnm.types.v1 import types_pb2

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
# The body of one request: far above anything Docker sends.
MAX_BODY = 1 << 20

# Option keys Docker puts in CreateNetwork / CreateEndpoint / ProgramExternalConnectivity.
GENERIC = "com.docker.network.generic"
ENABLE_IPV6 = "com.docker.network.enable_ipv6"
INTERNAL = "com.docker.network.internal"
PORT_MAP = "com.docker.network.portmap"
EXPOSED_PORTS = "com.docker.network.endpoint.exposedports"
MAC_ADDRESS = "com.docker.network.endpoint.macaddress"
# IpamDriver.RequestAddress: what the address is for.
REQUEST_ADDRESS_TYPE = "RequestAddressType"
GATEWAY_TYPE = "com.docker.network.gateway"

# IANA protocol numbers, as libnetwork's types.Protocol.
_PROTO_TO_PB = {
    6: types_pb2.PROTOCOL_TCP,
    17: types_pb2.PROTOCOL_UDP,
    132: types_pb2.PROTOCOL_SCTP,
}
_PB_TO_PROTO = {v: k for k, v in _PROTO_TO_PB.items()}


class PluginError(Exception):
    """A refusal Docker shows to its user (the message is all they see)."""


def decode(body: bytes) -> dict[str, Any]:
    """A request body: a JSON object (an empty body counts as `{}`)."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise PluginError(f"request is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise PluginError("request is not a JSON object")
    return value


def field(req: Mapping[str, Any], name: str, *, required: bool = True) -> str:
    """A string field of a request; PluginError when missing (if required) or not a string."""
    value = req.get(name)
    if value is None or value == "":
        if required:
            raise PluginError(f"{name} is required")
        return ""
    if not isinstance(value, str) or len(value) > 4096:
        raise PluginError(f"{name}: expected a string")
    return value


def docker_id(req: Mapping[str, Any], name: str) -> str:
    """NetworkID / EndpointID: Docker's 64 hex characters."""
    value = field(req, name)
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise PluginError(f"{name} {value[:80]!r}: expected 64 hex characters")
    return value


def options(req: Mapping[str, Any]) -> dict[str, Any]:
    value = req.get("Options") or {}
    if not isinstance(value, dict):
        raise PluginError("Options: expected an object")
    return value


def string_map(value: Any, what: str) -> dict[str, str]:
    """Driver options (`-o k=v`) as cnm takes them: strings only."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PluginError(f"{what}: expected an object")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, str | int):
            raise PluginError(f"{what}: option {k!r} is not a string")
        out[str(k)] = str(v)
    return out


def flag(value: Any) -> bool:
    """A libnetwork boolean option: true, or the strings "true"/"1"."""
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)


def bare(cidr: str) -> str:
    """ "10.0.0.1/24" -> "10.0.0.1"; "" stays ""."""
    return str(ipaddress.ip_interface(cidr).ip) if cidr else ""


# --- ports ------------------------------------------------------------------------------------


def _port(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise PluginError(f"{what}: expected a port number, got {value!r}")
    return value


def _proto(value: Any) -> types_pb2.Protocol.ValueType:
    if value not in _PROTO_TO_PB:
        raise PluginError(f"Proto: unsupported protocol {value!r}")
    return _PROTO_TO_PB[value]


def port_bindings(opts: Mapping[str, Any]) -> list[types_pb2.PortBinding]:
    """`com.docker.network.portmap` (libnetwork's []types.PortBinding) in cnm's form."""
    raw = opts.get(PORT_MAP) or []
    if not isinstance(raw, list) or len(raw) > 4096:
        raise PluginError(f"{PORT_MAP}: expected a list")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise PluginError(f"{PORT_MAP}: expected objects")
        host_port = _port(item.get("HostPort", 0), "HostPort")
        host_end = _port(item.get("HostPortEnd", 0), "HostPortEnd")
        out.append(
            types_pb2.PortBinding(
                protocol=_proto(item.get("Proto")),
                host_ip=item.get("HostIP") or "",
                host_port=host_port,
                host_port_end=host_end if host_end > host_port else 0,
                container_port=_port(item.get("Port", 0), "Port"),
            )
        )
    return out


def exposed_ports(opts: Mapping[str, Any]) -> list[types_pb2.ExposedPort]:
    raw = opts.get(EXPOSED_PORTS) or []
    if not isinstance(raw, list) or len(raw) > 4096:
        raise PluginError(f"{EXPOSED_PORTS}: expected a list")
    return [
        types_pb2.ExposedPort(protocol=_proto(i.get("Proto")), port=_port(i.get("Port"), "Port"))
        for i in raw
        if isinstance(i, dict)
    ]


def port_map_json(bindings: Iterable[types_pb2.PortBinding]) -> list[dict[str, Any]]:
    """Published ports as Docker reads them back from EndpointOperInfo (`docker port`)."""
    return [
        {
            "Proto": _PB_TO_PROTO.get(b.protocol, 6),
            "IP": b.container_ip,
            "Port": b.container_port,
            "HostIP": b.host_ip or "0.0.0.0",
            "HostPort": b.host_port,
            "HostPortEnd": b.host_port_end or b.host_port,
        }
        for b in bindings
    ]


def exposed_json(ports: Iterable[types_pb2.ExposedPort]) -> list[dict[str, Any]]:
    return [{"Proto": _PB_TO_PROTO.get(p.protocol, 6), "Port": p.port} for p in ports]
