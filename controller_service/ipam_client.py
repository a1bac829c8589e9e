"""Calls to the IPAM service, in domain terms.

Every call has a deadline (the configured one, shortened to the caller's);
failures come back as domain errors (from_rpc_error), so IPAM's
RESOURCE_EXHAUSTED or ALREADY_EXISTS reach the controller's caller unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import grpc

from cnm.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from controller_service import deadline
from controller_service.models import PoolUsage
from services.channel import dial
from services.errors import Internal, NotFound, Unavailable
from services.rpc_errors import from_rpc_error

log = logging.getLogger(__name__)

GATEWAY_OPTIONS = {"RequestAddressType": "com.docker.network.gateway"}


class IpamClient:
    def __init__(self, address: str, timeout: float, **tls: str) -> None:
        self.address = address
        self.timeout = timeout
        self._tls = tls
        self._lock = threading.Lock()
        self._spaces: tuple[str, str] | None = None
        self._channel = dial(address, timeout=timeout, **tls)
        self._stub = ipam_pb2_grpc.IpamStub(self._channel)
        self._ids = ipam_pb2_grpc.IdAllocatorStub(self._channel)

    def _call(self, method: str, request: Any, *, ids: bool = False) -> Any:
        stub = self._stub
        target = self._ids if ids else stub
        try:
            return getattr(target, method)(request, timeout=deadline.timeout(self.timeout))
        except grpc.RpcError as e:
            err = from_rpc_error(e)
            if isinstance(err, Unavailable | Internal):
                err = from_rpc_error(e, "IPAM service")
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                self._redial(stub)
            raise err from e

    def _redial(self, failed: ipam_pb2_grpc.IpamStub) -> None:
        # A channel in reconnect backoff fails every call at once for up to
        # minutes: after IPAM restarts, dial afresh instead.
        # The old channel is left to close itself once no call holds it.
        with self._lock:
            if self._stub is not failed:
                return
            self._channel = dial(self.address, timeout=self.timeout, **self._tls)
            self._stub = ipam_pb2_grpc.IpamStub(self._channel)
            self._ids = ipam_pb2_grpc.IdAllocatorStub(self._channel)

    def default_spaces(self) -> tuple[str, str]:
        """(local, global) default address space names."""
        with self._lock:
            if self._spaces is None:
                resp = self._call(
                    "GetDefaultAddressSpaces",
                    ipam_pb2.GetDefaultAddressSpacesRequest(),
                )
                self._spaces = (
                    resp.local_default_address_space or "LocalDefault",
                    resp.global_default_address_space or "GlobalDefault",
                )
            return self._spaces

    def request_pool(
        self,
        *,
        space: str,
        pool: str,
        sub_pool: str,
        options: dict[str, str],
        v6: bool,
        owner: str,
        request_id: str,
        driver: str = "",
    ) -> tuple[str, str]:
        """(pool_id, pool CIDR); `driver` names a remote IPAM plugin ("" for cnm's)."""
        resp = self._call(
            "RequestPool",
            ipam_pb2.RequestPoolRequest(
                address_space=space,
                pool=pool,
                sub_pool=sub_pool,
                options=options,
                v6=v6,
                owner=owner,
                request_id=request_id,
                driver=driver,
            ),
        )
        return resp.pool_id, resp.pool

    def release_pool(self, pool_id: str) -> None:
        """Idempotent: a pool already gone is success."""
        with contextlib.suppress(NotFound):
            self._call("ReleasePool", ipam_pb2.ReleasePoolRequest(pool_id=pool_id))

    def request_address(
        self, pool_id: str, address: str = "", *, owner: str, options: dict[str, str] | None = None
    ) -> str:
        """The address in CIDR form."""
        resp = self._call(
            "RequestAddress",
            ipam_pb2.RequestAddressRequest(
                pool_id=pool_id, address=address, options=options or {}, owner=owner
            ),
        )
        return resp.address

    def release_address(self, pool_id: str, address: str) -> None:
        """Idempotent, also when the pool itself is gone."""
        with contextlib.suppress(NotFound):
            self._call(
                "ReleaseAddress",
                ipam_pb2.ReleaseAddressRequest(pool_id=pool_id, address=address),
            )

    def usage(self, pool_id: str) -> tuple[int, int]:
        """(used, free) of one pool."""
        pool = self._call("GetPool", ipam_pb2.GetPoolRequest(pool_id=pool_id))
        return pool.used, pool.free

    def list_pools(self, page_size: int = 0, page_token: str = "") -> tuple[list[PoolUsage], str]:
        resp = self._call(
            "ListPools",
            ipam_pb2.ListPoolsRequest(page_size=page_size, page_token=page_token),
        )
        pools = [
            PoolUsage(
                pool_id=p.pool_id,
                address_space=p.address_space,
                pool=p.pool,
                sub_pool=p.sub_pool,
                owner=p.owner,
                used=p.used,
                free=p.free,
            )
            for p in resp.pools
        ]
        return pools, resp.next_page_token

    def pools_owned_by(self, owner: str) -> list[str]:
        """Ids of every pool held by `owner` (finds pools a crash left unrecorded)."""
        found: list[str] = []
        token = ""
        while True:
            pools, token = self.list_pools(page_size=1000, page_token=token)
            found += [p.pool_id for p in pools if p.owner == owner]
            if not token:
                return found

    def addresses_owned_by(self, pool_id: str, owner: str) -> list[str]:
        """Addresses of `pool_id` held by `owner` (finds allocations a crash left unrecorded)."""
        found: list[str] = []
        token = ""
        while True:
            try:
                resp = self._call(
                    "ListAllocations",
                    ipam_pb2.ListAllocationsRequest(
                        pool_id=pool_id, page_size=1000, page_token=token
                    ),
                )
            except NotFound:
                return found
            found += [a.address for a in resp.allocations if a.owner == owner]
            token = resp.next_page_token
            if not token:
                return found

    # ---------------------------------------------------------------- id ranges (VNIs)

    def create_id_range(self, name: str, start: int, end: int) -> None:
        """Idempotent for equal bounds (ALREADY_EXISTS when the name has others)."""
        self._call(
            "CreateRange", ipam_pb2.CreateRangeRequest(name=name, start=start, end=end), ids=True
        )

    def get_id(
        self,
        name: str,
        *,
        owner: str,
        id_: int | None = None,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int:
        """`id_` exactly (ALREADY_EXISTS when taken), else the lowest free one in
        [lo, hi] (or in the whole range); RESOURCE_EXHAUSTED when none is free."""
        request = ipam_pb2.GetIdRequest(name=name, owner=owner)
        if id_ is not None:
            request.id = id_
        if lo is not None and hi is not None:
            request.range_start, request.range_end = lo, hi
        return int(self._call("GetId", request, ids=True).id)

    def release_id(self, name: str, id_: int) -> None:
        """Idempotent, also when the range itself is gone."""
        with contextlib.suppress(NotFound):
            self._call("ReleaseId", ipam_pb2.ReleaseIdRequest(name=name, id=id_), ids=True)
