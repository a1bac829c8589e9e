"""Calls to the driver service of each host, in domain terms.

The address of a host's driver service comes from its `host:<id>` record.
Every call has a deadline (the configured one, shortened to the caller's), so
a host that does not answer turns into UNAVAILABLE naming the host, never a
hang. Driver errors come back as the matching domain errors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cnm.driver.v1 import driver_pb2, driver_pb2_grpc
from controller_service import deadline
from controller_service.models import (
    Endpoint,
    Host,
    JoinResult,
    Network,
    PoolAllocation,
    Sandbox,
    SandboxPaths,
)
from services.channel import dial
from services.errors import Internal, Unavailable
from services.rpc_errors import from_rpc_error
from services.values import proto as values_pb

log = logging.getLogger(__name__)
T = TypeVar("T")


def _ipam_data(pools: tuple[PoolAllocation, ...], space: str) -> list[driver_pb2.IpamData]:
    return [
        driver_pb2.IpamData(
            address_space=space,
            pool=p.subnet,
            gateway=p.gateway,
            aux_addresses=dict(p.aux_addresses),
        )
        for p in pools
    ]


def _create_request(ep: Endpoint) -> driver_pb2.CreateEndpointRequest:
    return driver_pb2.CreateEndpointRequest(
        network_id=ep.network_id,
        endpoint_id=ep.id,
        interface=driver_pb2.EndpointInterface(
            address=ep.ipv4_address,
            address_ipv6=ep.ipv6_address,
            mac_address=ep.mac_address,
        ),
        options=dict(ep.options),
        port_bindings=[values_pb.binding_to_pb(p) for p in ep.port_bindings],
        exposed_ports=[values_pb.exposed_to_pb(p) for p in ep.exposed_ports],
        name=ep.name,
        aliases=list(ep.aliases),
    )


def _join_result(resp: driver_pb2.JoinResponse) -> JoinResult:
    return JoinResult(
        interface_name=resp.interface_name,
        host_interface_name=resp.host_interface_name,
        gateway=resp.gateway,
        gateway_ipv6=resp.gateway_ipv6,
        mac_address=resp.mac_address,
        published_ports=tuple(values_pb.binding_from_pb(p) for p in resp.port_bindings),
    )


# Upper bound of the liveness probe done before an operation changes anything.
PROBE_TIMEOUT = 2.0


class DriverClient:
    def __init__(
        self,
        host: Host,
        channel: grpc.Channel,
        timeout: float,
        on_unavailable: Callable[[], None] = lambda: None,
    ) -> None:
        self.host_id = host.id
        self.timeout = timeout
        self._stub = driver_pb2_grpc.DriverStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)
        self._on_unavailable = on_unavailable

    def probe(self) -> None:
        """UNAVAILABLE unless the driver service answers SERVING now. Done
        before an operation's first change: a heartbeat within its TTL does
        not prove the service still answers (it may hang or have just died),
        and a failure here leaves nothing behind. Half of the remaining time
        is kept for the operation itself. A blocking call: a future would
        start grpc's channel thread for it (when no other future is in
        flight), which cost more than the round trip it overlapped."""
        timeout = min(PROBE_TIMEOUT, max(deadline.MINIMUM, deadline.timeout(self.timeout) / 2))
        try:
            resp = self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as e:
            self._on_unavailable()
            raise Unavailable(
                f"driver service of host {self.host_id!r} does not answer: {e.code().name}",
                reason="HOST_UNREACHABLE",
                metadata={"host": self.host_id},
            ) from e
        if resp.status != health_pb2.HealthCheckResponse.SERVING:
            raise Unavailable(
                f"driver service of host {self.host_id!r} is not serving",
                reason="HOST_UNREACHABLE",
                metadata={"host": self.host_id},
            )

    def _call(self, method: str, fn: Callable[..., T], request: Any) -> T:
        try:
            return fn(request, timeout=deadline.timeout(self.timeout))
        except grpc.RpcError as e:
            # The driver's refusals reach the user as the driver worded them; only
            # a failure of the service itself says which host's service failed.
            err = from_rpc_error(e)
            if isinstance(err, Unavailable | Internal):
                err = from_rpc_error(e, f"driver service of host {self.host_id!r}")
            if isinstance(err, Unavailable):
                err.metadata.setdefault("host", self.host_id)
                self._on_unavailable()
            raise err from e

    def create_network(self, net: Network, space: str) -> None:
        self._call(
            "CreateNetwork",
            self._stub.CreateNetwork,
            driver_pb2.CreateNetworkRequest(
                network_id=net.id,
                name=net.name,
                driver=net.driver,
                options=dict(net.options),
                ipv4_data=_ipam_data(tuple(p for p in net.pools if not p.v6), space),
                ipv6_data=_ipam_data(tuple(p for p in net.pools if p.v6), space),
                internal=net.internal,
                enable_ipv6=net.enable_ipv6,
            ),
        )

    def delete_network(self, network_id: str) -> None:
        self._call(
            "DeleteNetwork",
            self._stub.DeleteNetwork,
            driver_pb2.DeleteNetworkRequest(network_id=network_id),
        )

    def create_endpoint(self, ep: Endpoint) -> str:
        """Returns the MAC address the driver settled on."""
        resp = self._call("CreateEndpoint", self._stub.CreateEndpoint, _create_request(ep))
        return resp.interface.mac_address or ep.mac_address

    def connect(self, ep: Endpoint, sandbox_id: str, options: dict[str, str]) -> JoinResult:
        """CreateEndpoint and Join in one call (the driver undoes its create
        when the join fails). The MAC the driver settled on is in the result."""
        resp = self._call(
            "Join",
            self._stub.Join,
            driver_pb2.JoinRequest(
                network_id=ep.network_id,
                endpoint_id=ep.id,
                sandbox_id=sandbox_id,
                options=options,
                create=_create_request(ep),
            ),
        )
        return _join_result(resp)

    def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        self._call(
            "DeleteEndpoint",
            self._stub.DeleteEndpoint,
            driver_pb2.DeleteEndpointRequest(network_id=network_id, endpoint_id=endpoint_id),
        )

    def join(
        self, network_id: str, endpoint_id: str, sandbox_id: str, options: dict[str, str]
    ) -> JoinResult:
        resp = self._call(
            "Join",
            self._stub.Join,
            driver_pb2.JoinRequest(
                network_id=network_id,
                endpoint_id=endpoint_id,
                sandbox_id=sandbox_id,
                options=options,
            ),
        )
        return _join_result(resp)

    def leave(self, network_id: str, endpoint_id: str, sandbox_id: str) -> None:
        self._call(
            "Leave",
            self._stub.Leave,
            driver_pb2.LeaveRequest(
                network_id=network_id, endpoint_id=endpoint_id, sandbox_id=sandbox_id
            ),
        )

    def create_sandbox(self, sb: Sandbox) -> SandboxPaths:
        resp = self._call(
            "CreateSandbox",
            self._stub.CreateSandbox,
            driver_pb2.CreateSandboxRequest(
                sandbox_id=sb.id,
                name=sb.name,
                hostname=sb.hostname,
                domainname=sb.domainname,
                dns=values_pb.dns_to_pb(sb.dns),
                extra_hosts=values_pb.extra_hosts_to_pb(sb.extra_hosts),
                external_key=sb.external_key,
                runtime_moves_interfaces=sb.runtime_moves_interfaces,
                host_network=sb.host_network,
            ),
        )
        return SandboxPaths(
            key=resp.key, hosts_path=resp.hosts_path, resolv_conf_path=resp.resolv_conf_path
        )

    def delete_sandbox(self, sandbox_id: str) -> None:
        self._call(
            "DeleteSandbox",
            self._stub.DeleteSandbox,
            driver_pb2.DeleteSandboxRequest(sandbox_id=sandbox_id),
        )


class DriverClients:
    """One channel per driver-service address, shared by all requests."""

    def __init__(self, timeout: float, **tls: str) -> None:
        self.timeout = timeout
        self._tls = tls
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def for_host(self, host: Host) -> DriverClient:
        if not host.address:
            raise Unavailable(
                f"host {host.id!r} has not registered its driver service address",
                reason="HOST_UNREACHABLE",
                metadata={"host": host.id},
            )
        with self._lock:
            channel = self._channels.get(host.address)
            if channel is None:
                channel = dial(host.address, timeout=self.timeout, **self._tls)
                self._channels[host.address] = channel
        return DriverClient(host, channel, self.timeout, lambda: self._drop(host.address, channel))

    def _drop(self, address: str, channel: grpc.Channel) -> None:
        """Forgets a channel that failed: a channel in reconnect backoff fails
        every call at once for up to minutes, so a host that comes back would
        stay unreachable; the next call dials afresh instead. The old channel
        is not closed here: calls of other requests (or their rollbacks) may
        still hold it, and closing a channel under a live call can crash
        grpc; it closes itself when the last user lets go."""
        with self._lock:
            if self._channels.get(address) is channel:
                del self._channels[address]
