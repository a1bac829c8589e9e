"""Proto <-> model conversion: the one place (with the servicer and the two
outgoing clients) that knows the generated message types."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from cnm.controller.v1 import controller_pb2 as pb
from cnm.events.v1 import events_pb2
from cnm.types.v1 import types_pb2
from controller_service import models as m
from controller_service.events import EventType
from services.errors import InvalidArgument
from services.values import proto as values_pb

_SCOPE_TO = {m.Scope.LOCAL: types_pb2.SCOPE_LOCAL, m.Scope.GLOBAL: types_pb2.SCOPE_GLOBAL}
_SCOPE_FROM = {v: k for k, v in _SCOPE_TO.items()}
_EP_STATE = {
    m.EndpointState.CREATING: pb.ENDPOINT_STATE_CREATING,
    m.EndpointState.READY: pb.ENDPOINT_STATE_READY,
    # A join in flight is not a join yet; a leave in flight still is one.
    m.EndpointState.JOINING: pb.ENDPOINT_STATE_READY,
    m.EndpointState.JOINED: pb.ENDPOINT_STATE_JOINED,
    m.EndpointState.LEAVING: pb.ENDPOINT_STATE_JOINED,
    m.EndpointState.DELETING: pb.ENDPOINT_STATE_DELETING,
}
_HOST_STATE = {
    m.HostState.READY: pb.HOST_STATE_READY,
    m.HostState.UNREACHABLE: pb.HOST_STATE_UNREACHABLE,
}
_EVENT_TYPE = {t: events_pb2.EventType.Value("EVENT_TYPE_" + t.name) for t in EventType}


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    if seconds:
        ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def scope_to(scope: m.Scope | None) -> types_pb2.Scope.ValueType:
    return (
        _SCOPE_TO.get(scope, types_pb2.SCOPE_UNSPECIFIED) if scope else types_pb2.SCOPE_UNSPECIFIED
    )


def scope_from(value: types_pb2.Scope.ValueType) -> m.Scope:
    if value not in _SCOPE_FROM:
        raise InvalidArgument(
            f"invalid scope {value}: expected SCOPE_LOCAL or SCOPE_GLOBAL", reason="INVALID_SCOPE"
        )
    return _SCOPE_FROM[value]


# ------------------------------------------------------------------ shared value types


# ------------------------------------------------------------------ networks


def ipam_from(spec: pb.IpamSpec) -> m.IpamSpec:
    return m.IpamSpec(
        driver=spec.driver,
        options=dict(spec.options),
        configs=tuple(
            m.IpamConfig(
                subnet=c.subnet,
                ip_range=c.ip_range,
                gateway=c.gateway,
                aux_addresses=dict(c.aux_addresses),
            )
            for c in spec.configs
        ),
    )


def ipam_to(net: m.Network) -> pb.IpamSpec:
    """The IPAM configuration in force: the subnets IPAM actually gave (a
    config-only network allocates none: the configuration it holds)."""
    if net.config_only:
        return pb.IpamSpec(
            driver=net.ipam.driver,
            options=dict(net.ipam.options),
            configs=[
                types_pb2.IpamConfig(
                    subnet=c.subnet,
                    ip_range=c.ip_range,
                    gateway=c.gateway,
                    aux_addresses=dict(c.aux_addresses),
                )
                for c in net.ipam.configs
            ],
        )
    configs = [
        types_pb2.IpamConfig(
            subnet=p.subnet,
            ip_range=p.ip_range,
            gateway=p.gateway.split("/")[0],
            aux_addresses={k: v.split("/")[0] for k, v in p.aux_addresses.items()},
        )
        for p in net.pools
    ]
    return pb.IpamSpec(driver=net.ipam.driver, options=dict(net.ipam.options), configs=configs)


def network_spec_from(req: pb.CreateNetworkRequest) -> m.NetworkSpec:
    return m.NetworkSpec(
        name=req.name,
        driver=req.driver,
        ipam=ipam_from(req.ipam),
        internal=req.internal,
        enable_ipv6=req.enable_ipv6,
        options=dict(req.options),
        labels=dict(req.labels),
        host=req.host,
        config_only=req.config_only,
        config_from=req.config_from,
        attachable=req.attachable,
        scope=scope_from(req.scope) if req.scope else None,
    )


def network_to(
    net: m.Network,
    *,
    subnets: Sequence[m.SubnetStatus] = (),
    endpoint_ids: Iterable[str] = (),
) -> pb.Network:
    return pb.Network(
        id=net.id,
        name=net.name,
        driver=net.driver,
        scope=scope_to(net.scope),
        ipam=ipam_to(net),
        internal=net.internal,
        enable_ipv6=net.enable_ipv6,
        options=dict(net.options),
        labels=dict(net.labels),
        created=timestamp(net.created),
        host=net.host,
        subnets=[
            pb.SubnetStatus(
                subnet=s.subnet,
                ips_in_use=s.ips_in_use,
                dynamic_ips_available=min(s.dynamic_ips_available, 2**64 - 1),
            )
            for s in subnets
        ],
        endpoint_ids=sorted(endpoint_ids),
        config_only=net.config_only,
        config_from=net.config_from,
        attachable=net.attachable,
    )


def filter_from(f: pb.NetworkFilter) -> m.NetworkFilter:
    return m.NetworkFilter(
        names=tuple(f.names),
        ids=tuple(f.ids),
        drivers=tuple(f.drivers),
        labels=tuple(f.labels),
        scopes=tuple(scope_from(s) for s in f.scopes),
        types=tuple(f.types),
        dangling=f.dangling if f.HasField("dangling") else None,
    )


# ------------------------------------------------------------------ endpoints


def endpoint_spec_from(spec: pb.EndpointSpec) -> m.EndpointSpec:
    return m.EndpointSpec(
        name=spec.name,
        ipv4_address=spec.ipv4_address,
        ipv6_address=spec.ipv6_address,
        mac_address=spec.mac_address,
        aliases=tuple(spec.aliases),
        port_bindings=tuple(
            values_pb.binding_from_pb(p, default_tcp=True) for p in spec.port_bindings
        ),
        exposed_ports=tuple(
            values_pb.exposed_from_pb(p, default_tcp=True) for p in spec.exposed_ports
        ),
        options=dict(spec.options),
    )


def endpoint_to(ep: m.Endpoint) -> pb.Endpoint:
    return pb.Endpoint(
        id=ep.id,
        name=ep.name,
        network_id=ep.network_id,
        network_name=ep.network_name,
        sandbox_id=ep.sandbox_id if ep.state is not m.EndpointState.JOINING else "",
        ipv4_address=ep.ipv4_address,
        ipv6_address=ep.ipv6_address,
        mac_address=ep.mac_address,
        aliases=ep.aliases,
        port_bindings=[values_pb.binding_to_pb(p) for p in ep.port_bindings],
        published_ports=[values_pb.binding_to_pb(p) for p in ep.published_ports],
        exposed_ports=[values_pb.exposed_to_pb(p) for p in ep.exposed_ports],
        options=dict(ep.options),
        state=_EP_STATE[ep.state],
        host=ep.host,
        gateway=ep.gateway,
        gateway_ipv6=ep.gateway_ipv6,
        interface_name=ep.interface_name,
        host_interface_name=ep.host_interface_name,
    )


# ------------------------------------------------------------------ sandboxes


def sandbox_spec_from(req: pb.CreateSandboxRequest) -> m.SandboxSpec:
    return m.SandboxSpec(
        name=req.name,
        container_id=req.container_id,
        host=req.host,
        hostname=req.hostname,
        domainname=req.domainname,
        dns=values_pb.dns_from_pb(req.dns),
        extra_hosts=values_pb.extra_hosts_from_pb(req.extra_hosts),
        external_key=req.external_key,
        labels=dict(req.labels),
        runtime_moves_interfaces=req.runtime_moves_interfaces,
        host_network=req.host_network,
    )


def sandbox_to(sb: m.Sandbox, endpoints: Iterable[m.Endpoint] = ()) -> pb.Sandbox:
    return pb.Sandbox(
        id=sb.id,
        name=sb.name,
        container_id=sb.container_id,
        host=sb.host,
        hostname=sb.hostname,
        domainname=sb.domainname,
        dns=values_pb.dns_to_pb(sb.dns),
        extra_hosts=values_pb.extra_hosts_to_pb(sb.extra_hosts),
        key=sb.key,
        hosts_path=sb.hosts_path,
        resolv_conf_path=sb.resolv_conf_path,
        external=sb.external,
        endpoints=[endpoint_to(e) for e in endpoints],
        created=timestamp(sb.created),
        labels=dict(sb.labels),
        runtime_moves_interfaces=sb.runtime_moves_interfaces,
        host_network=sb.host_network,
        lost=sb.lost,
    )


# ------------------------------------------------------------------ hosts, drivers, pools, events


def host_to(h: m.Host) -> pb.Host:
    return pb.Host(
        id=h.id,
        address=h.address,
        advertise_address=h.advertise_address,
        drivers=[
            types_pb2.DriverCapability(name=c.name, scope=scope_to(c.scope), error=c.error)
            for c in h.drivers
        ],
        state=_HOST_STATE[h.state],
        last_heartbeat=timestamp(h.last_heartbeat),
    )


def driver_info_to(d: m.DriverInfo) -> pb.DriverInfo:
    return pb.DriverInfo(name=d.name, scope=scope_to(d.scope), hosts=d.hosts, error=d.error)


def pool_usage_to(p: m.PoolUsage) -> pb.PoolUsage:
    return pb.PoolUsage(
        pool_id=p.pool_id,
        address_space=p.address_space,
        pool=p.pool,
        sub_pool=p.sub_pool,
        owner=p.owner,
        used=p.used,
        free=min(p.free, 2**64 - 1),
    )


def event_to(e: m.Event) -> events_pb2.Event:
    try:
        type_ = _EVENT_TYPE[EventType(e.type)]
    except ValueError:
        type_ = events_pb2.EVENT_TYPE_UNSPECIFIED
    return events_pb2.Event(
        revision=e.revision,
        type=type_,
        time=timestamp(e.time),
        id=e.id,
        name=e.name,
        attributes=dict(e.attributes),
    )
