"""Domain errors shared by every cnm service.

Domain code raises these; one interceptor (services.interceptors) maps them to
gRPC status codes with a google.rpc.ErrorInfo whose `reason` clients branch on.
Domain modules never import grpc.
"""

from __future__ import annotations

from collections.abc import Sequence

ERROR_DOMAIN = "cnm.dev"


class CnmError(Exception):
    """Base class: `code` is the gRPC status code name, `reason` an UPPER_SNAKE id."""

    code = "UNKNOWN"
    default_reason = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        field: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})
        # The request field at fault ("spec.ipv4_address"): sent as a
        # google.rpc.BadRequest field violation next to the ErrorInfo.
        self.field = field

    def __str__(self) -> str:
        return self.message


class InvalidArgument(CnmError):
    """Malformed input: bad name, CIDR, address, option. Nothing was changed."""

    code = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"


class PermissionDenied(CnmError):
    """The caller asked for something cnm never does (e.g. plumbing the host's own
    network namespace as a sandbox). Nothing was changed."""

    code = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class NotFound(CnmError):
    code = "NOT_FOUND"
    default_reason = "NOT_FOUND"


class AlreadyExists(CnmError):
    code = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(CnmError):
    """The object is in a state that forbids the call (e.g. network has endpoints)."""

    code = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class Exhausted(CnmError):
    """A pool, range or bridge is full."""

    code = "RESOURCE_EXHAUSTED"
    default_reason = "EXHAUSTED"


class Unavailable(CnmError):
    """A dependency (Redis, a host's driver service, a plugin) does not answer."""

    code = "UNAVAILABLE"
    default_reason = "UNAVAILABLE"


class Aborted(CnmError):
    """A concurrent writer won a race and retries ran out; the caller may retry."""

    code = "ABORTED"
    default_reason = "ABORTED"


class OutOfRange(CnmError):
    """A position past what exists or is retained (e.g. an expired event revision)."""

    code = "OUT_OF_RANGE"
    default_reason = "OUT_OF_RANGE"


class Internal(CnmError):
    code = "INTERNAL"
    default_reason = "INTERNAL"


class MultiError(CnmError):
    """Best-effort teardown collected several failures; the first one decides the code."""

    def __init__(self, errors: Sequence[Exception]) -> None:
        first = errors[0]
        super().__init__(
            "; ".join(str(e) for e in errors), reason=getattr(first, "reason", "INTERNAL")
        )
        self.errors = list(errors)
        self.code = getattr(first, "code", "INTERNAL")
