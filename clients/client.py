"""A small typed client for the cnm controller (cnm.controller.v1.Controller).

    with Client("unix:///run/cnm/controller.sock") as cnm:
        net = cnm.create_network("web", subnets=[IpamConfig(subnet="10.9.0.0/24")])
        sb = cnm.create_sandbox("c1")
        ep = cnm.connect("web", "c1", port_bindings=parse_port_spec("8080:80"))

Every unary call carries a deadline (`timeout`, 10 s by default). A call that
fails with UNAVAILABLE (controller restarting, Redis blip) is retried with
backoff, resending the very same request: creates carry one `request_id` per
logical call, so the controller answers a retry with the first result instead
of acting twice. Failures raise clients.errors classes, which keep the
server's message and ErrorInfo reason. Methods return the generated messages
(`controller_pb2.Network`, ...); lists follow every page.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any, TypedDict, Unpack

import grpc

from clients.errors import from_rpc_error
from clients.portspec import PortMapping
from cnm.controller.v1 import controller_pb2 as pb
from cnm.controller.v1 import controller_pb2_grpc
from cnm.events.v1 import events_pb2
from cnm.types.v1 import types_pb2
from services.address import parse_address
from services.channel import channel_credentials

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "unix:///run/cnm/controller.sock"
DEFAULT_TIMEOUT = 10.0

# Re-exported so callers need not know the generated module layout.
IpamConfig = types_pb2.IpamConfig
PortBinding = types_pb2.PortBinding
ExposedPort = types_pb2.ExposedPort
ExtraHost = types_pb2.ExtraHost
Scope = types_pb2.Scope

PROTOCOLS = {
    "tcp": types_pb2.PROTOCOL_TCP,
    "udp": types_pb2.PROTOCOL_UDP,
    "sctp": types_pb2.PROTOCOL_SCTP,
}
SCOPES = {"local": types_pb2.SCOPE_LOCAL, "global": types_pb2.SCOPE_GLOBAL}


def new_request_id() -> str:
    return uuid.uuid4().hex


def port_binding(mapping: PortMapping | PortBinding) -> PortBinding:
    """The proto form of a parsed `-p` spec (protos pass through)."""
    if isinstance(mapping, PortBinding):
        return mapping
    return PortBinding(
        protocol=PROTOCOLS[mapping.protocol],
        host_ip=mapping.host_ip,
        host_port=mapping.host_port,
        host_port_end=mapping.host_port_end if mapping.host_port_end > mapping.host_port else 0,
        container_port=mapping.container_port,
    )


class EndpointOptions(TypedDict, total=False):
    """What an endpoint is created with (create_endpoint and connect keywords)."""

    name: str
    # Static addresses, no prefix; omitted for the next free ones.
    ipv4_address: str
    ipv6_address: str
    mac_address: str
    aliases: Iterable[str]
    port_bindings: Iterable[PortMapping | PortBinding]
    exposed_ports: Iterable[ExposedPort]
    options: Mapping[str, str]


def _endpoint_spec(opts: EndpointOptions) -> pb.EndpointSpec:
    return pb.EndpointSpec(
        name=opts.get("name", ""),
        ipv4_address=opts.get("ipv4_address", ""),
        ipv6_address=opts.get("ipv6_address", ""),
        mac_address=opts.get("mac_address", ""),
        aliases=list(opts.get("aliases", ())),
        port_bindings=[port_binding(p) for p in opts.get("port_bindings", ())],
        exposed_ports=list(opts.get("exposed_ports", ())),
        options=dict(opts.get("options", {})),
    )


def open_channel(
    address: str, *, tls_ca: str = "", tls_cert: str = "", tls_key: str = ""
) -> grpc.Channel:
    """A channel to `unix:///path` or `host:port`; TLS (mutual with cert+key) for TCP
    when `tls_ca` is given."""
    addr = parse_address(address)
    options = [
        # Our own retry loop resends the same request; gRPC's would not know request_id.
        ("grpc.enable_retries", 0),
        ("grpc.max_receive_message_length", 64 << 20),
        # A restarted controller is back within a second; the default 1 s+ reconnect
        # backoff would make every retry fail fast against a channel still backing off.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    if addr.kind == "tcp" and tls_ca:
        creds = channel_credentials(tls_ca, tls_cert, tls_key)
        return grpc.secure_channel(addr.grpc_target, creds, options=options)
    if tls_ca:
        raise ValueError("TLS applies to HOST:PORT addresses, not unix sockets")
    return grpc.insecure_channel(addr.grpc_target, options=options)


class Client:
    """Connects to `unix:///path` or `host:port` (TLS when `tls_ca` is given)."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 4,
        retry_backoff: float = 0.1,
        tls_ca: str = "",
        tls_cert: str = "",
        tls_key: str = "",
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.address = address
        self.timeout = timeout
        self.retries = max(0, retries)
        self.retry_backoff = retry_backoff
        self._channel = open_channel(address, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        self._stub = controller_pb2_grpc.ControllerStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _call(self, method: str, request: Any) -> Any:
        rpc = getattr(self._stub, method)
        delay = self.retry_backoff
        for attempt in range(self.retries + 1):
            try:
                return rpc(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                retry = exc.code() == grpc.StatusCode.UNAVAILABLE and attempt < self.retries
                if not retry:
                    raise from_rpc_error(exc, target=self.address) from None
                log.debug("%s unavailable (%s), retry %d", method, exc.details(), attempt + 1)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _list(self, method: str, request: Any, field: str) -> list[Any]:
        items: list[Any] = []
        seen: set[str] = set()
        while True:
            resp = self._call(method, request)
            items.extend(getattr(resp, field))
            token = resp.next_page_token
            # A server repeating a token would loop forever; stop instead.
            if not token or token in seen:
                return items
            seen.add(token)
            request.page_token = token

    # ------------------------------------------------------------------ networks

    def create_network(
        self,
        name: str,
        *,
        driver: str = "",
        subnets: Sequence[IpamConfig] = (),
        ipam_driver: str = "",
        ipam_options: Mapping[str, str] | None = None,
        internal: bool = False,
        enable_ipv6: bool = False,
        options: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        host: str = "",
        request_id: str = "",
        config_only: bool = False,
        config_from: str = "",
        attachable: bool = False,
        scope: str = "",
    ) -> pb.Network:
        """`scope`: "" for the driver's own, else "local"/"global" (must be the driver's)."""
        request = pb.CreateNetworkRequest(
            name=name,
            driver=driver,
            ipam=pb.IpamSpec(
                driver=ipam_driver, options=dict(ipam_options or {}), configs=list(subnets)
            ),
            internal=internal,
            enable_ipv6=enable_ipv6,
            options=dict(options or {}),
            labels=dict(labels or {}),
            host=host,
            request_id=request_id or new_request_id(),
            config_only=config_only,
            config_from=config_from,
            attachable=attachable,
            scope=SCOPES[scope] if scope else types_pb2.SCOPE_UNSPECIFIED,
        )
        return self._call("CreateNetwork", request)

    def get_network(self, id_or_name: str) -> pb.Network:
        return self._call("GetNetwork", pb.GetNetworkRequest(id_or_name=id_or_name))

    def list_networks(
        self,
        *,
        names: Iterable[str] = (),
        ids: Iterable[str] = (),
        drivers: Iterable[str] = (),
        labels: Iterable[str] = (),
        scopes: Iterable[str | types_pb2.Scope.ValueType] = (),
        types: Iterable[str] = (),
        dangling: bool | None = None,
        page_size: int = 0,
    ) -> list[pb.Network]:
        """Filters are AND'ed across keys, OR'ed within one except labels, which
        must all match (the controller applies them). `types`: "builtin"/"custom";
        `dangling`: True for networks without endpoints, False for those with."""
        scope_values = [SCOPES[s] if isinstance(s, str) else s for s in scopes]
        flt = pb.NetworkFilter(
            names=list(names),
            ids=list(ids),
            drivers=list(drivers),
            labels=list(labels),
            scopes=scope_values,
            types=list(types),
        )
        if dangling is not None:
            flt.dangling = dangling
        request = pb.ListNetworksRequest(filter=flt, page_size=page_size)
        return self._list("ListNetworks", request, "networks")

    def delete_network(self, id_or_name: str) -> None:
        self._call("DeleteNetwork", pb.DeleteNetworkRequest(id_or_name=id_or_name))

    def prune_networks(
        self, *, labels: Iterable[str] = (), until: float | None = None
    ) -> list[str]:
        """Deletes networks without endpoints (all `labels` carried, created
        before `until`, Unix seconds); returns their ids."""
        request = pb.PruneNetworksRequest(labels=list(labels))
        if until is not None:
            request.until.FromNanoseconds(int(until * 1e9))
        return list(self._call("PruneNetworks", request).deleted_ids)

    # ------------------------------------------------------------------ endpoints

    def create_endpoint(
        self, network: str, *, request_id: str = "", **spec: Unpack[EndpointOptions]
    ) -> pb.Endpoint:
        request = pb.CreateEndpointRequest(
            network=network,
            spec=_endpoint_spec(spec),
            request_id=request_id or new_request_id(),
        )
        return self._call("CreateEndpoint", request)

    def get_endpoint(self, endpoint_id: str) -> pb.Endpoint:
        return self._call("GetEndpoint", pb.GetEndpointRequest(id=endpoint_id))

    def list_endpoints(
        self, *, network: str = "", sandbox: str = "", page_size: int = 0
    ) -> list[pb.Endpoint]:
        request = pb.ListEndpointsRequest(network=network, sandbox=sandbox, page_size=page_size)
        return self._list("ListEndpoints", request, "endpoints")

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._call("DeleteEndpoint", pb.DeleteEndpointRequest(id=endpoint_id))

    # ------------------------------------------------------------------ sandboxes

    def create_sandbox(
        self,
        name: str,
        *,
        container_id: str = "",
        host: str = "",
        hostname: str = "",
        domainname: str = "",
        dns_servers: Iterable[str] = (),
        dns_search: Iterable[str] = (),
        dns_options: Iterable[str] = (),
        extra_hosts: Iterable[ExtraHost | tuple[str, str]] = (),
        external_key: str = "",
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
        runtime_moves_interfaces: bool = False,
        host_network: bool = False,
    ) -> pb.Sandbox:
        hosts = [
            h if isinstance(h, ExtraHost) else ExtraHost(hostname=h[0], address=h[1])
            for h in extra_hosts
        ]
        request = pb.CreateSandboxRequest(
            name=name,
            container_id=container_id,
            host=host,
            hostname=hostname,
            domainname=domainname,
            dns=types_pb2.DnsConfig(
                servers=list(dns_servers), search=list(dns_search), options=list(dns_options)
            ),
            extra_hosts=hosts,
            external_key=external_key,
            labels=dict(labels or {}),
            request_id=request_id or new_request_id(),
            runtime_moves_interfaces=runtime_moves_interfaces,
            host_network=host_network,
        )
        return self._call("CreateSandbox", request)

    def get_sandbox(self, id_or_name: str) -> pb.Sandbox:
        return self._call("GetSandbox", pb.GetSandboxRequest(id_or_name=id_or_name))

    def list_sandboxes(self, *, host: str = "", page_size: int = 0) -> list[pb.Sandbox]:
        request = pb.ListSandboxesRequest(host=host, page_size=page_size)
        return self._list("ListSandboxes", request, "sandboxes")

    def delete_sandbox(self, id_or_name: str) -> None:
        self._call("DeleteSandbox", pb.DeleteSandboxRequest(id_or_name=id_or_name))

    # ------------------------------------------------------------------ join / leave

    def join(
        self, endpoint_id: str, sandbox: str, *, options: Mapping[str, str] | None = None
    ) -> pb.Endpoint:
        request = pb.JoinRequest(
            endpoint_id=endpoint_id, sandbox=sandbox, options=dict(options or {})
        )
        return self._call("Join", request)

    def leave(self, endpoint_id: str, sandbox: str = "") -> pb.Endpoint:
        return self._call("Leave", pb.LeaveRequest(endpoint_id=endpoint_id, sandbox=sandbox))

    def connect(
        self,
        network: str,
        sandbox: str,
        *,
        request_id: str = "",
        **spec: Unpack[EndpointOptions],
    ) -> pb.Endpoint:
        """Create an endpoint and join it in one call (`docker network connect`)."""
        request = pb.ConnectRequest(
            network=network,
            sandbox=sandbox,
            spec=_endpoint_spec(spec),
            request_id=request_id or new_request_id(),
        )
        return self._call("Connect", request)

    def disconnect(self, network: str, sandbox: str) -> None:
        self._call("Disconnect", pb.DisconnectRequest(network=network, sandbox=sandbox))

    # ------------------------------------------------------------------ hosts, drivers, pools

    def list_hosts(self, *, page_size: int = 0) -> list[pb.Host]:
        return self._list("ListHosts", pb.ListHostsRequest(page_size=page_size), "hosts")

    def get_host(self, host_id: str) -> pb.Host:
        return self._call("GetHost", pb.GetHostRequest(id=host_id))

    def list_drivers(self, *, page_size: int = 0) -> list[pb.DriverInfo]:
        return self._list("ListDrivers", pb.ListDriversRequest(page_size=page_size), "drivers")

    def list_pools(self, *, page_size: int = 0) -> list[pb.PoolUsage]:
        return self._list("ListPools", pb.ListPoolsRequest(page_size=page_size), "pools")

    def release_pool(self, pool: str, *, address_space: str = "") -> str:
        """Releases a pool no network holds, by id or subnet; returns its id."""
        request = pb.ReleasePoolRequest(pool=pool, address_space=address_space)
        return self._call("ReleasePool", request).pool_id

    # ------------------------------------------------------------------ events and gc

    def watch(
        self,
        since: int = 0,
        *,
        since_time: float | None = None,
        timeout: float | None = None,
        resume: bool = True,
        markers: bool = False,
    ) -> Generator[events_pb2.Event, None, None]:
        """Events after revision `since` (0: only new ones; `since_time`, Unix
        seconds: retained ones from that time on), in order, until closed.

        With `markers`, each stream's first message (EVENT_TYPE_WATCH_STARTED,
        whose revision is where replay ends and live events begin) is yielded
        too. The stream has no deadline unless `timeout` is given (it is meant
        to last). When the connection drops (UNAVAILABLE), it is re-opened from
        the last revision seen, so nothing still retained is lost; `retries`
        consecutive failures without an event in between end it with
        UnavailableError. With `timeout`, the iteration simply ends when it
        runs out. Closing the generator cancels the call.
        """
        last = since
        failures = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            request = pb.WatchRequest(since_revision=last)
            if not last and since_time is not None:
                request.since_time.FromNanoseconds(int(since_time * 1e9))
            call = self._stub.Watch(request, timeout=remaining)
            try:
                for event in call:
                    failures = 0
                    if event.type == events_pb2.EVENT_TYPE_WATCH_STARTED:
                        if not last and since_time is None:
                            # A re-opened stream resumes here, not at "only new
                            # events" (with since_time, it asks by time again).
                            last = event.revision
                        if markers:
                            yield event
                        continue
                    last = max(last, event.revision)
                    yield event
                return
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    return  # the caller's own time limit: the watch is over, not failed
                if code == grpc.StatusCode.UNAVAILABLE and resume and failures < self.retries:
                    failures += 1
                    time.sleep(self.retry_backoff * 2**failures)
                    continue
                raise from_rpc_error(exc, target=self.address) from None
            finally:
                call.cancel()

    def garbage_collect(self, valid_sandbox_ids: Iterable[str]) -> pb.GarbageCollectResponse:
        request = pb.GarbageCollectRequest(valid_sandbox_ids=list(valid_sandbox_ids))
        return self._call("GarbageCollect", request)
