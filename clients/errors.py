"""What a failed controller call raises on the client side.

One class per gRPC status a cnm server sends (libnetwork's error classes:
NotFound, BadRequest, Forbidden, NoService...), each keeping the server's
message verbatim, the status code, and the `google.rpc.ErrorInfo` reason and
metadata so callers branch on `reason` instead of parsing text.
"""

from __future__ import annotations

import grpc

from services.rpc_errors import error_info, field_violations


class ClientError(Exception):
    """Base class: `message` is the server's text, `reason` its ErrorInfo reason."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        code: grpc.StatusCode | None = None,
        fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or (code or self.code).name
        self.metadata = dict(metadata or {})
        # google.rpc.BadRequest field violations: request field path -> description.
        self.fields = dict(fields or {})
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(ClientError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(ClientError):
    code = grpc.StatusCode.NOT_FOUND


class PermissionDeniedError(ClientError):
    code = grpc.StatusCode.PERMISSION_DENIED


class AlreadyExistsError(ClientError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(ClientError):
    """The object's state forbids the call (e.g. the network still has endpoints)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ExhaustedError(ClientError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(ClientError):
    """The controller (or something behind it) did not answer; safe to retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(UnavailableError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class AbortedError(ClientError):
    code = grpc.StatusCode.ABORTED


class InternalError(ClientError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[ClientError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        PermissionDeniedError,
        AlreadyExistsError,
        FailedPreconditionError,
        ExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        AbortedError,
        InternalError,
    )
}


# cnmctl's exit codes: one per kind of error, wherever it was found.
EXIT_REFUSED = 1  # valid request, refused by the state: not found, exists, in use, full
EXIT_INVALID = 2  # invalid input: usage, or a value cnmctl or the controller rejects
EXIT_SERVICE = 125  # the controller could not be reached or failed (docker's 125)
_EXIT_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_INVALID,
    grpc.StatusCode.UNAVAILABLE: EXIT_SERVICE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_SERVICE,
    grpc.StatusCode.INTERNAL: EXIT_SERVICE,
    grpc.StatusCode.UNKNOWN: EXIT_SERVICE,
    grpc.StatusCode.UNIMPLEMENTED: EXIT_SERVICE,
    grpc.StatusCode.DATA_LOSS: EXIT_SERVICE,
}


def exit_code(err: ClientError) -> int:
    """cnmctl's exit code for a failed call (see EXIT_*)."""
    return _EXIT_BY_CODE.get(err.code, EXIT_REFUSED)


def from_rpc_error(exc: grpc.RpcError, *, target: str = "") -> ClientError:
    """The ClientError for a failed call; `target` names the server in transport errors."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    info = error_info(exc)
    if info is None and code == grpc.StatusCode.UNAVAILABLE and target:
        # No ErrorInfo: the transport failed before a cnm server answered.
        message = f"cannot reach the controller at {target}: {details or 'unavailable'}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED and info is None:
        message = f"the controller at {target} did not answer in time" if target else details
    else:
        message = details or code.name.lower().replace("_", " ")
    cls = _BY_CODE.get(code, ClientError)
    return cls(
        message,
        reason=info.reason if info else "",
        metadata=dict(info.metadata) if info else None,
        code=code,
        fields=dict(field_violations(exc)),
    )
