"""Docker-style output for cnmctl: aligned tables, JSON lines, inspect objects.

Pure functions from generated messages to strings and plain dicts; no I/O, no
calls. Inspect objects use the keys `docker network inspect` users know
(`Name`, `Id`, `IPAM.Config[].Subnet`, `Containers`...), so existing jq
snippets keep working.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf import timestamp_pb2

from cnm.controller.v1 import controller_pb2 as pb
from cnm.events.v1 import events_pb2
from cnm.types.v1 import types_pb2

SHORT_ID = 12
# docker's formatter: tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)
_MIN_WIDTH = 10
_PADDING = 3


def short_id(value: str, no_trunc: bool = False) -> str:
    return value if no_trunc else value[:SHORT_ID]


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded as docker's tabwriter pads them; the last one is not padded."""
    lines = [list(headers), *[list(r) for r in rows]]
    widths = [
        max(_MIN_WIDTH, max(len(line[i]) for line in lines) + _PADDING)
        for i in range(len(headers) - 1)
    ]
    out = []
    for line in lines:
        cells = [cell.ljust(w) for cell, w in zip(line, widths, strict=False)] + [line[-1]]
        out.append("".join(cells).rstrip())
    return "\n".join(out) + "\n"


def json_line(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)


def inspect_json(objects: Sequence[Any]) -> str:
    """`docker inspect`'s shape: an indented JSON array, even for one object."""
    return json.dumps(list(objects), indent=4) + "\n"


def timestamp(ts: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 (UTC), "" when unset."""
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToJsonString()


def age(ts: timestamp_pb2.Timestamp, now: float | None = None) -> str:
    """ "3 seconds ago", as docker prints durations; "never" when unset."""
    if not ts.seconds and not ts.nanos:
        return "never"
    delta = max(0.0, (time.time() if now is None else now) - ts.ToNanoseconds() / 1e9)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if delta >= size:
            n = int(delta // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    n = int(delta)
    return "Less than a second ago" if n < 1 else f"{n} second{'s' if n != 1 else ''} ago"


def scope_name(scope: types_pb2.Scope.ValueType) -> str:
    return {types_pb2.SCOPE_LOCAL: "local", types_pb2.SCOPE_GLOBAL: "global"}.get(scope, "")


def protocol_name(proto: types_pb2.Protocol.ValueType) -> str:
    return {
        types_pb2.PROTOCOL_TCP: "tcp",
        types_pb2.PROTOCOL_UDP: "udp",
        types_pb2.PROTOCOL_SCTP: "sctp",
    }.get(proto, "tcp")


def _enum_suffix(enum: Any, value: int, prefix: str) -> str:
    name = enum.Name(value) if value in enum.values() else ""
    return name.removeprefix(prefix).lower() if name and not name.endswith("UNSPECIFIED") else ""


def endpoint_state(state: int) -> str:
    return _enum_suffix(pb.EndpointState, state, "ENDPOINT_STATE_")


def host_state(state: int) -> str:
    return _enum_suffix(pb.HostState, state, "HOST_STATE_")


def _labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# ---------------------------------------------------------------- networks

NETWORK_HEADERS = ("NETWORK ID", "NAME", "DRIVER", "SCOPE")


def network_row(net: pb.Network, no_trunc: bool = False) -> list[str]:
    return [short_id(net.id, no_trunc), net.name, net.driver, scope_name(net.scope)]


def network_json(net: pb.Network, no_trunc: bool = False) -> dict[str, str]:
    """`docker network ls --format json`: every value a string, as docker prints them."""
    return {
        "CreatedAt": timestamp(net.created),
        "Driver": net.driver,
        "ID": short_id(net.id, no_trunc),
        "IPv6": str(net.enable_ipv6).lower(),
        "Internal": str(net.internal).lower(),
        "Labels": _labels_text(net.labels),
        "Name": net.name,
        "Scope": scope_name(net.scope),
    }


def network_inspect(
    net: pb.Network,
    endpoints: Iterable[pb.Endpoint] = (),
    sandbox_names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`docker network inspect` object; `endpoints` of the network give `Containers`."""
    names = sandbox_names or {}
    containers = {
        ep.sandbox_id: {
            "Name": names.get(ep.sandbox_id, ""),
            "EndpointID": ep.id,
            "MacAddress": ep.mac_address,
            "IPv4Address": ep.ipv4_address,
            "IPv6Address": ep.ipv6_address,
        }
        for ep in endpoints
        if ep.sandbox_id and ep.network_id in ("", net.id)
    }
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": timestamp(net.created),
        "Scope": scope_name(net.scope),
        "Driver": net.driver,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": {
            "Driver": net.ipam.driver or "default",
            "Options": dict(net.ipam.options),
            "Config": [
                {
                    "Subnet": c.subnet,
                    "IPRange": c.ip_range,
                    "Gateway": c.gateway,
                    "AuxiliaryAddresses": dict(c.aux_addresses),
                }
                for c in net.ipam.configs
            ],
        },
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": net.config_from},
        "ConfigOnly": net.config_only,
        "Containers": containers,
        "Options": dict(net.options),
        "Labels": dict(net.labels),
        "Host": net.host,
        "Status": {
            "IPAM": {
                "Subnets": {
                    s.subnet: {
                        "IPsInUse": s.ips_in_use,
                        "DynamicIPsAvailable": s.dynamic_ips_available,
                    }
                    for s in net.subnets
                }
            }
        },
    }


# ---------------------------------------------------------------- endpoints

ENDPOINT_HEADERS = ("ENDPOINT ID", "NAME", "NETWORK", "SANDBOX ID", "IPV4 ADDRESS", "STATE")


def endpoint_row(ep: pb.Endpoint, no_trunc: bool = False) -> list[str]:
    return [
        short_id(ep.id, no_trunc),
        ep.name,
        ep.network_name or short_id(ep.network_id, no_trunc),
        short_id(ep.sandbox_id, no_trunc),
        ep.ipv4_address,
        endpoint_state(ep.state),
    ]


def endpoint_json(ep: pb.Endpoint, no_trunc: bool = False) -> dict[str, str]:
    return {
        "ID": short_id(ep.id, no_trunc),
        "Name": ep.name,
        "Network": ep.network_name,
        "NetworkID": short_id(ep.network_id, no_trunc),
        "SandboxID": short_id(ep.sandbox_id, no_trunc),
        "IPv4Address": ep.ipv4_address,
        "IPv6Address": ep.ipv6_address,
        "State": endpoint_state(ep.state),
    }


def ports_map(
    bindings: Iterable[types_pb2.PortBinding], exposed: Iterable[types_pb2.ExposedPort] = ()
) -> dict[str, list[dict[str, str]] | None]:
    """docker's `Ports`: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
    exposed-only ports mapped to null."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for e in exposed:
        out.setdefault(f"{e.port}/{protocol_name(e.protocol)}", None)
    for b in bindings:
        end = max(b.container_port_end, b.container_port)
        for offset in range(end - b.container_port + 1):
            key = f"{b.container_port + offset}/{protocol_name(b.protocol)}"
            if b.host_port_end > b.host_port and end == b.container_port:
                host_port = f"{b.host_port}-{b.host_port_end}"
            else:
                host_port = str(b.host_port + offset) if b.host_port else ""
            entries = out.get(key) or []
            entries.append({"HostIp": b.host_ip or "0.0.0.0", "HostPort": host_port})
            out[key] = entries
    return out


def endpoint_inspect(ep: pb.Endpoint) -> dict[str, Any]:
    return {
        "Name": ep.name,
        "Id": ep.id,
        "Network": ep.network_name,
        "NetworkID": ep.network_id,
        "SandboxID": ep.sandbox_id,
        "Host": ep.host,
        "State": endpoint_state(ep.state),
        "InterfaceName": ep.interface_name,
        "MacAddress": ep.mac_address,
        "IPv4Address": ep.ipv4_address,
        "IPv6Address": ep.ipv6_address,
        "Gateway": ep.gateway,
        "IPv6Gateway": ep.gateway_ipv6,
        "Aliases": list(ep.aliases),
        # Requested bindings; `Ports` is what is in force while joined.
        "PortBindings": ports_map(ep.port_bindings),
        "Ports": ports_map(ep.published_ports, ep.exposed_ports),
        "Options": dict(ep.options),
    }


# ---------------------------------------------------------------- sandboxes

SANDBOX_HEADERS = ("SANDBOX ID", "NAME", "CONTAINER ID", "HOST", "NETWORKS")


def _sandbox_networks(sb: pb.Sandbox) -> str:
    return ",".join(sorted(ep.network_name or short_id(ep.network_id) for ep in sb.endpoints))


def sandbox_row(sb: pb.Sandbox, no_trunc: bool = False) -> list[str]:
    return [
        short_id(sb.id, no_trunc),
        sb.name,
        short_id(sb.container_id, no_trunc),
        sb.host,
        _sandbox_networks(sb),
    ]


def sandbox_json(sb: pb.Sandbox, no_trunc: bool = False) -> dict[str, str]:
    return {
        "ID": short_id(sb.id, no_trunc),
        "Name": sb.name,
        "ContainerID": short_id(sb.container_id, no_trunc),
        "Host": sb.host,
        "Networks": _sandbox_networks(sb),
        "CreatedAt": timestamp(sb.created),
    }


def sandbox_inspect(sb: pb.Sandbox) -> dict[str, Any]:
    return {
        "Name": sb.name,
        "Id": sb.id,
        "ContainerID": sb.container_id,
        "Host": sb.host,
        "Created": timestamp(sb.created),
        "Key": sb.key,
        "External": sb.external,
        # As Docker's HostConfig.NetworkMode: "host" when Key is the host's namespace.
        "NetworkMode": "host" if sb.host_network else "default",
        # Its host found its network namespace gone (a reboot): delete it.
        "Lost": sb.lost,
        "HostsPath": sb.hosts_path,
        "ResolvConfPath": sb.resolv_conf_path,
        "Hostname": sb.hostname,
        "Domainname": sb.domainname,
        "Dns": list(sb.dns.servers),
        "DnsSearch": list(sb.dns.search),
        "DnsOptions": list(sb.dns.options),
        "ExtraHosts": [f"{h.hostname}:{h.address}" for h in sb.extra_hosts],
        "Labels": dict(sb.labels),
        "Endpoints": [
            {
                "Network": ep.network_name,
                "NetworkID": ep.network_id,
                "EndpointID": ep.id,
                "IPv4Address": ep.ipv4_address,
                "IPv6Address": ep.ipv6_address,
                "MacAddress": ep.mac_address,
                "Gateway": ep.gateway,
                "Aliases": list(ep.aliases),
                "Ports": ports_map(ep.published_ports, ep.exposed_ports),
            }
            for ep in sb.endpoints
        ],
    }


# ---------------------------------------------------------------- hosts, drivers, pools

HOST_HEADERS = ("HOST ID", "ADDRESS", "ADVERTISE ADDRESS", "STATE", "DRIVERS", "LAST HEARTBEAT")


def host_row(host: pb.Host, now: float | None = None) -> list[str]:
    return [
        host.id,
        host.address,
        host.advertise_address,
        host_state(host.state),
        ",".join(d.name for d in host.drivers),
        age(host.last_heartbeat, now),
    ]


def host_json(host: pb.Host) -> dict[str, Any]:
    return {
        "ID": host.id,
        "Address": host.address,
        "AdvertiseAddress": host.advertise_address,
        "State": host_state(host.state),
        "Drivers": [
            {"Name": d.name, "Scope": scope_name(d.scope), "Error": d.error} for d in host.drivers
        ],
        "LastHeartbeat": timestamp(host.last_heartbeat),
    }


DRIVER_HEADERS = ("NAME", "SCOPE", "HOSTS", "ERROR")


def driver_row(driver: pb.DriverInfo) -> list[str]:
    return [driver.name, scope_name(driver.scope), ",".join(driver.hosts), driver.error]


def driver_json(driver: pb.DriverInfo) -> dict[str, Any]:
    return {
        "Name": driver.name,
        "Scope": scope_name(driver.scope),
        "Hosts": list(driver.hosts),
        "Error": driver.error,
    }


POOL_HEADERS = ("POOL", "SUB POOL", "ADDRESS SPACE", "NETWORK", "USED", "FREE")


def pool_row(pool: pb.PoolUsage, no_trunc: bool = False) -> list[str]:
    return [
        pool.pool,
        pool.sub_pool,
        pool.address_space,
        short_id(pool.owner, no_trunc),
        str(pool.used),
        str(pool.free),
    ]


def pool_json(pool: pb.PoolUsage) -> dict[str, Any]:
    return {
        "PoolID": pool.pool_id,
        "AddressSpace": pool.address_space,
        "Pool": pool.pool,
        "SubPool": pool.sub_pool,
        "Network": pool.owner,
        "Used": pool.used,
        "Free": pool.free,
    }


# ---------------------------------------------------------------- events


def event_kind(event_type: int) -> tuple[str, str]:
    """("network", "create") for EVENT_TYPE_NETWORK_CREATED; docker's type/action pair."""
    name = _enum_suffix(events_pb2.EventType, event_type, "EVENT_TYPE_")
    obj, _, action = name.partition("_")
    verbs = {"created": "create", "deleted": "destroy", "joined": "join", "left": "leave"}
    return obj or "unknown", verbs.get(action, action or str(event_type))


def event_line(event: events_pb2.Event) -> str:
    """`docker events` style: TIME TYPE ACTION ID (name=..., revision=N, k=v...)."""
    obj, action = event_kind(event.type)
    attrs = {"name": event.name} if event.name else {}
    attrs.update(sorted(event.attributes.items()))
    attrs["revision"] = str(event.revision)
    text = ", ".join(f"{k}={v}" for k, v in attrs.items())
    head = [timestamp(event.time), obj, action, event.id]
    return " ".join(part for part in head if part) + f" ({text})"


def event_json(event: events_pb2.Event) -> dict[str, Any]:
    obj, action = event_kind(event.type)
    return {
        "Revision": event.revision,
        "Type": obj,
        "Action": action,
        "ID": event.id,
        "Name": event.name,
        "Time": timestamp(event.time),
        "Attributes": dict(event.attributes),
    }
