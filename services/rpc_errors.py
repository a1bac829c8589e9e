"""The one place where domain errors and gRPC statuses meet.

Server side: `to_status` turns a CnmError into a google.rpc.Status carrying an
ErrorInfo (reason + metadata). Client side: `from_rpc_error` turns a failed
call back into the matching CnmError, keeping the server's message and reason,
so a controller calling a driver service can re-raise what the driver meant.
"""

from __future__ import annotations

from typing import TypeVar

import google.rpc.code_pb2 as code_pb2
import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from grpc_status import rpc_status

from services import errors, limits

_M = TypeVar("_M", bound=Message)

_CLASSES: dict[str, type[errors.CnmError]] = {
    cls.code: cls
    for cls in (
        errors.InvalidArgument,
        errors.NotFound,
        errors.PermissionDenied,
        errors.AlreadyExists,
        errors.FailedPrecondition,
        errors.Exhausted,
        errors.Unavailable,
        errors.Aborted,
        errors.OutOfRange,
        errors.Internal,
    )
}


def to_status(err: errors.CnmError) -> grpc.Status:
    """The status of `err`; message and metadata cut short, so that a message echoing
    a huge input still fits gRPC's header limit and arrives as the intended code."""
    metadata = {limits.clip(k): limits.clip(v, 256) for k, v in err.metadata.items()}
    info = error_details_pb2.ErrorInfo(
        reason=err.reason, domain=errors.ERROR_DOMAIN, metadata=metadata
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    message = limits.clip(limits.cut_quoted(err.message), limits.MESSAGE_MAX)
    if err.field:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=limits.clip(err.field), description=message
                )
            ]
        )
        violation = any_pb2.Any()
        violation.Pack(bad)
        details.append(violation)
    status = status_pb2.Status(
        code=getattr(code_pb2, err.code, code_pb2.UNKNOWN),
        message=message,
        details=details,
    )
    return rpc_status.to_status(status)


def _detail(exc: grpc.RpcError, cls: type[_M]) -> _M | None:
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(cls.DESCRIPTOR):
            message = cls()
            detail.Unpack(message)
            return message
    return None


def error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo a cnm server attached to a failed call, if any."""
    return _detail(exc, error_details_pb2.ErrorInfo)


def field_violations(exc: grpc.RpcError) -> list[tuple[str, str]]:
    """(field path, description) of the google.rpc.BadRequest of a failed call."""
    bad = _detail(exc, error_details_pb2.BadRequest)
    return [(v.field, v.description) for v in bad.field_violations] if bad else []


def from_rpc_error(exc: grpc.RpcError, context: str = "") -> errors.CnmError:
    """The domain error a failed call stands for; `context` prefixes the message."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    message = f"{context}: {details}" if context else (details or code.name)
    info = error_info(exc)
    reason = info.reason if info else None
    metadata = dict(info.metadata) if info else None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.Unavailable(message or "deadline exceeded", reason="DEADLINE_EXCEEDED")
    cls = _CLASSES.get(code.name, errors.Internal)
    fields = field_violations(exc)
    return cls(message, reason=reason, metadata=metadata, field=fields[0][0] if fields else "")
