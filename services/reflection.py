"""Server reflection, v1alpha and v1, with the protos' comments.

grpcio-reflection answers from the Python descriptor pool, which keeps no
source_code_info: a client (grpcurl describe, Postman, an IDE) would see the
methods but none of the comments that document them, their idempotency and
their error reasons. scripts/gen-protos.sh also writes every cnm proto with
its comments into `cnm/descriptors.binpb` (protoc --include_source_info);
the servicer here answers as grpcio-reflection does, then puts the commented
copy of each cnm file in place of the pool's. Without that file (stubs made
some other way) reflection works as before, without comments.

grpcurl and newer clients ask for reflection v1 first. grpcio-reflection only
ships v1alpha, whose messages are the same on the wire (same fields and
numbers, another package name): the same servicer answers v1 too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

log = logging.getLogger(__name__)

SERVICE_NAMES = (reflection.SERVICE_NAME, "grpc.reflection.v1.ServerReflection")
_DESCRIPTOR_SET = "descriptors.binpb"


def commented_files() -> dict[str, bytes]:
    """File name -> serialized FileDescriptorProto with comments; {} when the
    descriptor set was not generated."""
    try:
        data = resources.files("cnm").joinpath(_DESCRIPTOR_SET).read_bytes()
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        log.debug("no %s: reflection serves no comments", _DESCRIPTOR_SET)
        return {}
    fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    return {f.name: f.SerializeToString() for f in fds.file}


class CommentedReflectionServicer(reflection.ReflectionServicer):
    def __init__(self, service_names: list[str], commented: Mapping[str, bytes]) -> None:
        super().__init__(service_names)
        self._commented = dict(commented)

    def ServerReflectionInfo(  # noqa: N802 - the gRPC method's name
        self, request_iterator: Iterator[Any], context: Any
    ) -> Iterator[Any]:
        for response in super().ServerReflectionInfo(request_iterator, context):
            if response.HasField("file_descriptor_response"):
                files = response.file_descriptor_response.file_descriptor_proto
                files[:] = [self._with_comments(f) for f in files]
            yield response

    def _with_comments(self, serialized: bytes) -> bytes:
        name = descriptor_pb2.FileDescriptorProto.FromString(serialized).name
        return self._commented.get(name, serialized)


def enable(names: list[str], server: grpc.Server) -> None:
    """Reflection v1alpha and v1 for `names` (which should include SERVICE_NAMES)."""
    servicer = CommentedReflectionServicer(names, commented_files())
    for service in SERVICE_NAMES:
        handler = grpc.method_handlers_generic_handler(
            service,
            {
                "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                    servicer.ServerReflectionInfo,
                    request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                    response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
