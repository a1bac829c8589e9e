"""cnm.controller.v1.Controller over gRPC: proto -> model, one controller
call, model -> proto. Errors are domain errors, mapped by the interceptor."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from cnm.controller.v1 import controller_pb2 as pb
from cnm.controller.v1 import controller_pb2_grpc
from cnm.events.v1 import events_pb2
from controller_service import convert, deadline, messages, pools
from controller_service.controller import Controller
from services.errors import CnmError

F = TypeVar("F", bound=Callable[..., Any])


def _within_deadline(method: F) -> F:
    """Calls made while serving this request respect its caller's deadline; its
    errors name objects as users know them (names, not 64-hex ids)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            # An intent the call leaves open goes to the reconciler at once (inflight.py).
            with deadline.serving(context.time_remaining()), self.c.ctx.repo.inflight.operation():
                return method(self, request, context)
        except CnmError as err:
            raise messages.polish(err, self.c.ctx.repo) from err.__cause__

    return wrapper  # type: ignore[return-value]


class ControllerServicer(controller_pb2_grpc.ControllerServicer):
    def __init__(self, controller: Controller) -> None:
        self.c = controller

    # ------------------------------------------------------------------ networks

    @_within_deadline
    def CreateNetwork(self, request: pb.CreateNetworkRequest, context: Any) -> pb.Network:
        net = self.c.create_network(convert.network_spec_from(request), request.request_id)
        return convert.network_to(net)

    @_within_deadline
    def GetNetwork(self, request: pb.GetNetworkRequest, context: Any) -> pb.Network:
        net, subnets, endpoint_ids = self.c.networks.get(request.id_or_name)
        return convert.network_to(net, subnets=subnets, endpoint_ids=endpoint_ids)

    @_within_deadline
    def ListNetworks(
        self, request: pb.ListNetworksRequest, context: Any
    ) -> pb.ListNetworksResponse:
        revision = self.c.events.last_revision()
        page = self.c.networks.list(
            convert.filter_from(request.filter), request.page_size, request.page_token
        )
        return pb.ListNetworksResponse(
            revision=revision,
            networks=[
                convert.network_to(n, endpoint_ids=self.c.networks.endpoint_ids(n))
                for n in page.items
            ],
            next_page_token=page.next_token,
        )

    @_within_deadline
    def DeleteNetwork(
        self, request: pb.DeleteNetworkRequest, context: Any
    ) -> pb.DeleteNetworkResponse:
        self.c.networks.delete(request.id_or_name)
        return pb.DeleteNetworkResponse()

    @_within_deadline
    def PruneNetworks(
        self, request: pb.PruneNetworksRequest, context: Any
    ) -> pb.PruneNetworksResponse:
        until = request.until.ToNanoseconds() / 1e9 if request.HasField("until") else None
        deleted = self.c.networks.prune(tuple(request.labels), until)
        return pb.PruneNetworksResponse(deleted_ids=deleted)

    # ------------------------------------------------------------------ endpoints

    @_within_deadline
    def CreateEndpoint(self, request: pb.CreateEndpointRequest, context: Any) -> pb.Endpoint:
        ep = self.c.create_endpoint(
            request.network, convert.endpoint_spec_from(request.spec), request.request_id
        )
        return convert.endpoint_to(ep)

    @_within_deadline
    def GetEndpoint(self, request: pb.GetEndpointRequest, context: Any) -> pb.Endpoint:
        return convert.endpoint_to(self.c.endpoints.get(request.id))

    @_within_deadline
    def ListEndpoints(
        self, request: pb.ListEndpointsRequest, context: Any
    ) -> pb.ListEndpointsResponse:
        revision = self.c.events.last_revision()
        page = self.c.endpoints.list(
            request.network, request.sandbox, request.page_size, request.page_token
        )
        return pb.ListEndpointsResponse(
            revision=revision,
            endpoints=[convert.endpoint_to(e) for e in page.items],
            next_page_token=page.next_token,
        )

    @_within_deadline
    def DeleteEndpoint(
        self, request: pb.DeleteEndpointRequest, context: Any
    ) -> pb.DeleteEndpointResponse:
        self.c.endpoints.delete(request.id)
        return pb.DeleteEndpointResponse()

    # ------------------------------------------------------------------ sandboxes

    @_within_deadline
    def CreateSandbox(self, request: pb.CreateSandboxRequest, context: Any) -> pb.Sandbox:
        sb = self.c.create_sandbox(convert.sandbox_spec_from(request), request.request_id)
        return convert.sandbox_to(sb)

    @_within_deadline
    def GetSandbox(self, request: pb.GetSandboxRequest, context: Any) -> pb.Sandbox:
        sb, endpoints = self.c.sandboxes.get(request.id_or_name)
        return convert.sandbox_to(sb, endpoints)

    @_within_deadline
    def ListSandboxes(
        self, request: pb.ListSandboxesRequest, context: Any
    ) -> pb.ListSandboxesResponse:
        revision = self.c.events.last_revision()
        page = self.c.sandboxes.list(request.host, request.page_size, request.page_token)
        return pb.ListSandboxesResponse(
            revision=revision,
            sandboxes=[
                convert.sandbox_to(s, self.c.sandboxes.joined_endpoints(s)) for s in page.items
            ],
            next_page_token=page.next_token,
        )

    @_within_deadline
    def DeleteSandbox(
        self, request: pb.DeleteSandboxRequest, context: Any
    ) -> pb.DeleteSandboxResponse:
        self.c.sandboxes.delete(request.id_or_name)
        return pb.DeleteSandboxResponse()

    # ------------------------------------------------------------------ join / leave

    @_within_deadline
    def Join(self, request: pb.JoinRequest, context: Any) -> pb.Endpoint:
        ep = self.c.joins.join(request.endpoint_id, request.sandbox, dict(request.options))
        return convert.endpoint_to(ep)

    @_within_deadline
    def Leave(self, request: pb.LeaveRequest, context: Any) -> pb.Endpoint:
        return convert.endpoint_to(self.c.joins.leave(request.endpoint_id, request.sandbox))

    @_within_deadline
    def Connect(self, request: pb.ConnectRequest, context: Any) -> pb.Endpoint:
        ep = self.c.connect(
            request.network,
            request.sandbox,
            convert.endpoint_spec_from(request.spec),
            request.request_id,
        )
        return convert.endpoint_to(ep)

    @_within_deadline
    def Disconnect(self, request: pb.DisconnectRequest, context: Any) -> pb.DisconnectResponse:
        self.c.joins.disconnect(request.network, request.sandbox)
        return pb.DisconnectResponse()

    # ------------------------------------------------------------------ hosts, drivers, pools

    @_within_deadline
    def ListHosts(self, request: pb.ListHostsRequest, context: Any) -> pb.ListHostsResponse:
        page = self.c.ctx.hosts.list(request.page_size, request.page_token)
        return pb.ListHostsResponse(
            hosts=[convert.host_to(h) for h in page.items], next_page_token=page.next_token
        )

    @_within_deadline
    def GetHost(self, request: pb.GetHostRequest, context: Any) -> pb.Host:
        return convert.host_to(self.c.ctx.hosts.get(request.id))

    @_within_deadline
    def ListDrivers(self, request: pb.ListDriversRequest, context: Any) -> pb.ListDriversResponse:
        page = self.c.ctx.hosts.list_drivers(request.page_size, request.page_token)
        return pb.ListDriversResponse(
            drivers=[convert.driver_info_to(d) for d in page.items],
            next_page_token=page.next_token,
        )

    @_within_deadline
    def ListPools(self, request: pb.ListPoolsRequest, context: Any) -> pb.ListPoolsResponse:
        page = self.c.list_pools(request.page_size, request.page_token)
        return pb.ListPoolsResponse(
            pools=[convert.pool_usage_to(p) for p in page.items], next_page_token=page.next_token
        )

    @_within_deadline
    def ReleasePool(self, request: pb.ReleasePoolRequest, context: Any) -> pb.ReleasePoolResponse:
        return pb.ReleasePoolResponse(
            pool_id=pools.release_pool(self.c.ctx, request.pool, request.address_space)
        )

    # ------------------------------------------------------------------ events, gc

    def Watch(self, request: pb.WatchRequest, context: Any) -> Iterator[events_pb2.Event]:
        since_time = (
            request.since_time.ToNanoseconds() / 1e9 if request.HasField("since_time") else None
        )
        for event in self.c.events.follow(request.since_revision, context.is_active, since_time):
            yield convert.event_to(event)

    @_within_deadline
    def GarbageCollect(
        self, request: pb.GarbageCollectRequest, context: Any
    ) -> pb.GarbageCollectResponse:
        result = self.c.garbage_collect(list(request.valid_sandbox_ids))
        return pb.GarbageCollectResponse(
            removed_sandbox_ids=result.removed_sandbox_ids,
            removed_endpoint_ids=result.removed_endpoint_ids,
        )
