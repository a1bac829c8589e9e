"""cnm.driver.v1 messages <-> the driver service's domain values. The only place they meet.

Conversion does not validate (that is `specs.py`, in the domain), except that
enum values with no domain meaning (PROTOCOL_UNSPECIFIED, unknown numbers)
become InvalidArgument naming the field.
"""

from __future__ import annotations

from cnm.driver.v1 import driver_pb2 as pb
from cnm.types.v1 import types_pb2 as tpb
from driver_service.models import (
    SCOPE_GLOBAL,
    SCOPE_LOCAL,
    Capability,
    EndpointRecord,
    EndpointSpec,
    IpamData,
    JoinResult,
    NetworkSpec,
    PortBinding,
    SandboxRecord,
    SandboxSpec,
    SandboxView,
    StaticRoute,
)
from services.errors import InvalidArgument
from services.values import proto as values_pb

_SCOPES = {SCOPE_LOCAL: tpb.SCOPE_LOCAL, SCOPE_GLOBAL: tpb.SCOPE_GLOBAL}


# --- requests -> domain ------------------------------------------------------------------------


def _ipam(d: pb.IpamData) -> IpamData:
    return IpamData(
        pool=d.pool,
        gateway=d.gateway,
        address_space=d.address_space,
        aux_addresses=dict(d.aux_addresses),
    )


def network_spec(req: pb.CreateNetworkRequest) -> NetworkSpec:
    return NetworkSpec(
        network_id=req.network_id,
        name=req.name,
        driver=req.driver,
        options=dict(req.options),
        ipv4=tuple(_ipam(d) for d in req.ipv4_data),
        ipv6=tuple(_ipam(d) for d in req.ipv6_data),
        internal=req.internal,
        enable_ipv6=req.enable_ipv6,
    )


def endpoint_spec(req: pb.CreateEndpointRequest) -> EndpointSpec:
    return EndpointSpec(
        network_id=req.network_id,
        endpoint_id=req.endpoint_id,
        address=req.interface.address,
        address_ipv6=req.interface.address_ipv6,
        mac=req.interface.mac_address,
        options=dict(req.options),
        port_bindings=tuple(values_pb.binding_from_pb(p) for p in req.port_bindings),
        exposed_ports=tuple(values_pb.exposed_from_pb(e) for e in req.exposed_ports),
        name=req.name,
        aliases=tuple(req.aliases),
    )


def connect_endpoint_spec(req: pb.JoinRequest) -> EndpointSpec:
    """The endpoint a Join with `create` makes first; it must be the one joined."""
    for field, value in (("network_id", req.network_id), ("endpoint_id", req.endpoint_id)):
        given = getattr(req.create, field)
        if given != value:
            raise InvalidArgument(
                f"create.{field} {given!r} is not the joined {field} {value!r}",
                reason="CREATE_MISMATCH",
                field=f"create.{field}",
            )
    return endpoint_spec(req.create)


def sandbox_spec(req: pb.CreateSandboxRequest) -> SandboxSpec:
    return SandboxSpec(
        sandbox_id=req.sandbox_id,
        name=req.name,
        hostname=req.hostname,
        domainname=req.domainname,
        dns=values_pb.dns_from_pb(req.dns),
        extra_hosts=values_pb.extra_hosts_from_pb(req.extra_hosts),
        external_key=req.external_key,
        runtime_moves_interfaces=req.runtime_moves_interfaces,
        host_network=req.host_network,
    )


# --- domain -> responses -----------------------------------------------------------------------


def capabilities(caps: list[Capability]) -> pb.GetCapabilitiesResponse:
    return pb.GetCapabilitiesResponse(
        capabilities=[
            tpb.DriverCapability(
                name=c.name, scope=_SCOPES.get(c.scope, tpb.SCOPE_UNSPECIFIED), error=c.error
            )
            for c in caps
        ]
    )


def _static_route_pb(r: StaticRoute) -> tpb.StaticRoute:
    return tpb.StaticRoute(
        destination=r.destination,
        route_type=tpb.ROUTE_TYPE_NEXTHOP if r.next_hop else tpb.ROUTE_TYPE_CONNECTED,
        next_hop=r.next_hop,
    )


def create_endpoint_response(rec: EndpointRecord) -> pb.CreateEndpointResponse:
    return pb.CreateEndpointResponse(
        interface=pb.EndpointInterface(
            address=rec.spec.address, address_ipv6=rec.spec.address_ipv6, mac_address=rec.mac
        )
    )


def oper_info_response(
    value: dict[str, str], bindings: tuple[PortBinding, ...]
) -> pb.EndpointOperInfoResponse:
    return pb.EndpointOperInfoResponse(
        value=value, port_bindings=[values_pb.binding_to_pb(p) for p in bindings]
    )


def join_response(res: JoinResult) -> pb.JoinResponse:
    return pb.JoinResponse(
        interface_name=res.interface_name,
        gateway=res.gateway,
        gateway_ipv6=res.gateway_ipv6,
        static_routes=[_static_route_pb(r) for r in res.static_routes],
        port_bindings=[values_pb.binding_to_pb(p) for p in res.port_bindings],
        mac_address=res.mac,
        host_interface_name=res.host_interface_name,
    )


def sandbox(rec: SandboxRecord) -> pb.Sandbox:
    return pb.Sandbox(
        sandbox_id=rec.id,
        key=rec.key,
        hosts_path=rec.hosts_path,
        resolv_conf_path=rec.resolv_conf_path,
        host_network=rec.spec.host_network,
    )


def sandbox_view(view: SandboxView) -> pb.GetSandboxResponse:
    return pb.GetSandboxResponse(
        sandbox=sandbox(view.sandbox),
        interfaces=[
            tpb.InterfaceStatus(
                name=i.name, mac_address=i.mac, mtu=i.mtu, addresses=list(i.addresses), up=i.up
            )
            for i in view.interfaces
        ],
        routes=[
            tpb.RouteStatus(destination=r.destination, gateway=r.gateway, interface=r.interface)
            for r in view.routes
        ],
    )
