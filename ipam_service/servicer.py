"""gRPC servicers of cnm.ipam.v1.Ipam and cnm.ipam.v1.IdAllocator: thin adapters.

proto -> model (convert.py), one domain call (pools.py / idranges.py), model ->
proto. Errors are domain errors, mapped to status codes by the interceptor.
Pools of remote IPAM plugins (RequestPool with a `driver`, pool ids
"remote:...") go to remote.py instead of pools.py.
"""

from __future__ import annotations

from typing import Any

from cnm.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from services.paging import page_size

from . import convert
from .idranges import IdRanges
from .pools import Pools
from .remote import BUILTIN_DRIVERS, RemotePools, is_remote
from .spaces import GLOBAL_DEFAULT, LOCAL_DEFAULT


class IpamServicer(ipam_pb2_grpc.IpamServicer):
    def __init__(self, pools: Pools, remote: RemotePools) -> None:
        self.pools = pools
        self.remote = remote

    def GetDefaultAddressSpaces(self, request: Any, context: Any) -> Any:
        return ipam_pb2.GetDefaultAddressSpacesResponse(
            local_default_address_space=LOCAL_DEFAULT, global_default_address_space=GLOBAL_DEFAULT
        )

    def RequestPool(self, request: Any, context: Any) -> Any:
        if request.driver not in BUILTIN_DRIVERS:
            rec = self.remote.request_pool(**convert.remote_pool_request_from(request))
            return ipam_pb2.RequestPoolResponse(pool_id=rec.pool_id, pool=rec.pool, data=rec.data)
        grant = self.pools.request_pool(convert.pool_request_from(request))
        return ipam_pb2.RequestPoolResponse(
            pool_id=str(grant.pool_id), pool=str(grant.pool_id.subnet), data=dict(grant.data)
        )

    def ReleasePool(self, request: Any, context: Any) -> Any:
        if is_remote(request.pool_id):
            self.remote.release_pool(request.pool_id)
            return ipam_pb2.ReleasePoolResponse()
        self.pools.release_pool(request.pool_id)
        return ipam_pb2.ReleasePoolResponse()

    def RequestAddress(self, request: Any, context: Any) -> Any:
        if is_remote(request.pool_id):
            address = self.remote.request_address(
                request.pool_id, request.address, dict(request.options), request.owner
            )
            return ipam_pb2.RequestAddressResponse(address=address)
        address = self.pools.request_address(convert.address_request_from(request))
        return ipam_pb2.RequestAddressResponse(address=address)

    def ReleaseAddress(self, request: Any, context: Any) -> Any:
        if is_remote(request.pool_id):
            self.remote.release_address(request.pool_id, request.address)
            return ipam_pb2.ReleaseAddressResponse()
        self.pools.release_address(request.pool_id, request.address)
        return ipam_pb2.ReleaseAddressResponse()

    def GetPool(self, request: Any, context: Any) -> Any:
        if is_remote(request.pool_id):
            return convert.remote_pool_to(self.remote.get_pool(request.pool_id))
        return convert.pool_to(self.pools.get_pool(request.pool_id))

    def ListPools(self, request: Any, context: Any) -> Any:
        # cnm's own pools first, then the remote ones (page tokens tell them apart).
        space, size, token = request.address_space, request.page_size, request.page_token
        out = []
        if not self.remote.is_token(token):
            pools, token = self.pools.list_pools(space, size, token)
            out = [convert.pool_to(p) for p in pools]
            room = page_size(size, 100, 1000) - len(out)
            if token or not room:
                token = token or self.remote.first_token(space)
                return ipam_pb2.ListPoolsResponse(pools=out, next_page_token=token)
            size, token = room, ""
        remote, token = self.remote.list_pools(space, size, token)
        out += [convert.remote_pool_to(p) for p in remote]
        return ipam_pb2.ListPoolsResponse(pools=out, next_page_token=token)

    def ListAllocations(self, request: Any, context: Any) -> Any:
        if is_remote(request.pool_id):
            allocations, token = self.remote.list_allocations(
                request.pool_id, request.page_size, request.page_token
            )
            return ipam_pb2.ListAllocationsResponse(
                allocations=[convert.allocation_to(a) for a in allocations], next_page_token=token
            )
        allocations, token = self.pools.list_allocations(
            request.pool_id, request.page_size, request.page_token
        )
        return ipam_pb2.ListAllocationsResponse(
            allocations=[convert.allocation_to(a) for a in allocations], next_page_token=token
        )


class IdAllocatorServicer(ipam_pb2_grpc.IdAllocatorServicer):
    def __init__(self, ranges: IdRanges) -> None:
        self.ranges = ranges

    def CreateRange(self, request: Any, context: Any) -> Any:
        self.ranges.create_range(request.name, request.start, request.end)
        return ipam_pb2.CreateRangeResponse()

    def GetId(self, request: Any, context: Any) -> Any:
        id_ = self.ranges.get_id(
            request.name,
            id_=request.id if request.HasField("id") else None,
            lo=request.range_start if request.HasField("range_start") else None,
            hi=request.range_end if request.HasField("range_end") else None,
            owner=request.owner,
        )
        return ipam_pb2.GetIdResponse(id=id_)

    def ReleaseId(self, request: Any, context: Any) -> Any:
        self.ranges.release_id(request.name, request.id)
        return ipam_pb2.ReleaseIdResponse()

    def DeleteRange(self, request: Any, context: Any) -> Any:
        self.ranges.delete_range(request.name)
        return ipam_pb2.DeleteRangeResponse()
