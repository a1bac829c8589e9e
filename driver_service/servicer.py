"""cnm.driver.v1.Driver over gRPC: request → domain value, one Manager call, → response.

Errors are raised as domain errors and mapped to status codes by the shared
interceptor. Until the service has reconciled the kernel with its records
(`gate`), every call is UNAVAILABLE: acting on half-known state could undo
what reconciliation is about to finish.
"""

from __future__ import annotations

import threading

from cnm.driver.v1 import driver_pb2 as pb
from cnm.driver.v1 import driver_pb2_grpc
from driver_service import convert
from driver_service.manager import Manager
from services.errors import Unavailable


class Gate:
    """Open once the service is ready to act (records loaded, kernel reconciled)."""

    def __init__(self) -> None:
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    def check(self) -> None:
        if not self._open.is_set():
            raise Unavailable(
                "the driver service is starting (reconciling the kernel with its records); retry",
                reason="RECONCILING",
            )


class DriverServicer(driver_pb2_grpc.DriverServicer):
    def __init__(self, manager: Manager, gate: Gate) -> None:
        self.m = manager
        self.gate = gate

    def GetCapabilities(
        self, request: pb.GetCapabilitiesRequest, context
    ) -> pb.GetCapabilitiesResponse:  # noqa: N802, E501
        return convert.capabilities(self.m.capabilities(request.driver))

    def CreateNetwork(self, request: pb.CreateNetworkRequest, context) -> pb.CreateNetworkResponse:  # noqa: N802
        self.gate.check()
        self.m.create_network(convert.network_spec(request))
        return pb.CreateNetworkResponse()

    def DeleteNetwork(self, request: pb.DeleteNetworkRequest, context) -> pb.DeleteNetworkResponse:  # noqa: N802
        self.gate.check()
        self.m.delete_network(request.network_id)
        return pb.DeleteNetworkResponse()

    def CreateEndpoint(
        self, request: pb.CreateEndpointRequest, context
    ) -> pb.CreateEndpointResponse:  # noqa: N802, E501
        self.gate.check()
        return convert.create_endpoint_response(
            self.m.create_endpoint(convert.endpoint_spec(request))
        )

    def DeleteEndpoint(
        self, request: pb.DeleteEndpointRequest, context
    ) -> pb.DeleteEndpointResponse:  # noqa: N802, E501
        self.gate.check()
        self.m.delete_endpoint(request.network_id, request.endpoint_id)
        return pb.DeleteEndpointResponse()

    def EndpointOperInfo(
        self, request: pb.EndpointOperInfoRequest, context
    ) -> pb.EndpointOperInfoResponse:  # noqa: N802, E501
        self.gate.check()
        value, ports = self.m.endpoint_oper_info(request.network_id, request.endpoint_id)
        return convert.oper_info_response(dict(value), ports)

    def Join(self, request: pb.JoinRequest, context) -> pb.JoinResponse:  # noqa: N802
        self.gate.check()
        if request.HasField("create"):
            return convert.join_response(
                self.m.connect(
                    convert.connect_endpoint_spec(request),
                    request.sandbox_id,
                    dict(request.options),
                )
            )
        return convert.join_response(
            self.m.join(
                request.network_id,
                request.endpoint_id,
                request.sandbox_id,
                dict(request.options),
            )
        )

    def Leave(self, request: pb.LeaveRequest, context) -> pb.LeaveResponse:  # noqa: N802
        self.gate.check()
        self.m.leave(request.network_id, request.endpoint_id, request.sandbox_id)
        return pb.LeaveResponse()

    def CreateSandbox(self, request: pb.CreateSandboxRequest, context) -> pb.Sandbox:  # noqa: N802
        self.gate.check()
        return convert.sandbox(self.m.create_sandbox(convert.sandbox_spec(request)))

    def DeleteSandbox(self, request: pb.DeleteSandboxRequest, context) -> pb.DeleteSandboxResponse:  # noqa: N802, E501
        self.gate.check()
        self.m.delete_sandbox(request.sandbox_id)
        return pb.DeleteSandboxResponse()

    def GetSandbox(self, request: pb.GetSandboxRequest, context) -> pb.GetSandboxResponse:  # noqa: N802
        self.gate.check()
        return convert.sandbox_view(self.m.get_sandbox(request.sandbox_id))
