"""The shared server bootstrap: health, reflection, unix socket mode, error mapping."""

from __future__ import annotations

import os
import stat

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cnm.controller.v1 import controller_pb2
from services import errors
from services.channel import dial
from services.config import ConfigError
from services.rpc_errors import error_info, field_violations, from_rpc_error
from services.server import Server, ServiceSpec

SERVICE = "cnm.test.v1.Echo"


def _raise(request: bytes, context) -> bytes:
    kind = request.decode()
    if kind == "ok":
        return b"ok"
    if kind == "boom":
        raise RuntimeError("boom")
    if kind == "field":
        raise errors.InvalidArgument(
            "invalid address 'x'", reason="INVALID_ADDRESS", field="spec.ipv4_address"
        )
    cls = getattr(errors, kind)
    raise cls(f"no such network {kind!r}", reason="NETWORK_NOT_FOUND", metadata={"k": "v"})


def _add(servicer, server: grpc.Server) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(servicer)}
    )
    server.add_generic_rpc_handlers((handler,))


@pytest.fixture
def server(tmp_path):
    srv = Server([ServiceSpec(SERVICE, _add, _raise)], f"unix://{tmp_path}/s.sock")
    srv.start()
    srv.set_serving(True)
    yield srv, f"unix://{tmp_path}/s.sock"
    srv.stop(0)


def _call(address: str, payload: bytes) -> bytes:
    with dial(address, timeout=5) as channel:
        return channel.unary_unary(f"/{SERVICE}/Call")(payload)


def test_unix_socket_is_root_only(server):
    _, address = server
    mode = stat.S_IMODE(os.stat(address[len("unix://") :]).st_mode)
    assert mode == 0o600


def test_health_reports_serving_per_service(server):
    _, address = server
    with dial(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in (SERVICE, ""):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(server):
    _, address = server
    with dial(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        resp = next(stub.ServerReflectionInfo(iter([req]), timeout=5))
        names = {s.name for s in resp.list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health"} <= names


def test_reflection_v1_answers_as_v1alpha(server):
    _, address = server
    with dial(address) as channel:
        # A v1 client: same messages on the wire, the v1 method path.
        info = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        names = {s.name for s in next(info(iter([req]), timeout=5)).list_services_response.service}
        assert {SERVICE, "grpc.reflection.v1.ServerReflection"} <= names
        req = reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health")
        resp = next(info(iter([req]), timeout=5))
        assert resp.file_descriptor_response.file_descriptor_proto


@pytest.mark.parametrize(
    "kind,code",
    [
        ("NotFound", grpc.StatusCode.NOT_FOUND),
        ("InvalidArgument", grpc.StatusCode.INVALID_ARGUMENT),
        ("AlreadyExists", grpc.StatusCode.ALREADY_EXISTS),
        ("FailedPrecondition", grpc.StatusCode.FAILED_PRECONDITION),
        ("Exhausted", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("Unavailable", grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_domain_errors_map_to_status_with_error_info(server, kind, code):
    _, address = server
    with pytest.raises(grpc.RpcError) as exc:
        _call(address, kind.encode())
    assert exc.value.code() == code
    assert "no such network" in exc.value.details()
    info = error_info(exc.value)
    assert info is not None and info.reason == "NETWORK_NOT_FOUND" and info.metadata["k"] == "v"
    back = from_rpc_error(exc.value)
    assert isinstance(back, getattr(errors, kind)) and back.reason == "NETWORK_NOT_FOUND"


def test_field_errors_carry_bad_request_field_violations(server):
    _, address = server
    with pytest.raises(grpc.RpcError) as exc:
        _call(address, b"field")
    assert field_violations(exc.value) == [("spec.ipv4_address", "invalid address 'x'")]
    assert error_info(exc.value).reason == "INVALID_ADDRESS"
    assert from_rpc_error(exc.value).field == "spec.ipv4_address"


def test_unexpected_exception_is_internal_not_a_traceback(server):
    _, address = server
    with pytest.raises(grpc.RpcError) as exc:
        _call(address, b"boom")
    assert exc.value.code() == grpc.StatusCode.INTERNAL
    assert "boom" in exc.value.details()


def test_second_server_on_a_live_socket_is_a_config_error(server):
    _, address = server
    with pytest.raises(ConfigError, match="another process"):
        Server([ServiceSpec(SERVICE, _add, _raise)], address)


def test_missing_socket_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Server([ServiceSpec(SERVICE, _add, _raise)], f"unix://{tmp_path}/nope/s.sock")


def _method_comment(fdp: descriptor_pb2.FileDescriptorProto, service: str, method: str) -> str:
    """What `grpcurl describe` prints above a method: its leading comment."""
    (si,) = [i for i, s in enumerate(fdp.service) if s.name == service]
    (mi,) = [i for i, m in enumerate(fdp.service[si].method) if m.name == method]
    path = [6, si, 2, mi]  # FileDescriptorProto.service, ServiceDescriptorProto.method
    found = [loc for loc in fdp.source_code_info.location if list(loc.path) == path]
    return found[0].leading_comments if found else ""


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_serves_the_protos_comments(server, version):
    assert controller_pb2.DESCRIPTOR  # in the descriptor pool, as in the controller
    _, address = server
    with dial(address) as channel:
        info = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        req = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="cnm.controller.v1.Controller"
        )
        resp = next(info(iter([req]), timeout=5))
    files = {
        f.name: f
        for f in map(
            descriptor_pb2.FileDescriptorProto.FromString,
            resp.file_descriptor_response.file_descriptor_proto,
        )
    }
    controller = files["cnm/controller/v1/controller.proto"]
    assert "Leaves every endpoint first" in _method_comment(
        controller, "Controller", "DeleteSandbox"
    )
    # Files from outside cnm (well-known types) still come, as the pool has them.
    assert "google/protobuf/timestamp.proto" in files
