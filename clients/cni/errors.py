"""CNI error results (SPEC.md section 5, "Error") and the well-known codes.

A failed command prints `{"cniVersion", "code", "msg", "details"}` on stdout
and exits non-zero; libcni turns that into the runtime's error. `msg` is the
one-line message a user reads (Docker's wording where cnm has one), `details`
what helps to act on it.
"""

from __future__ import annotations

from typing import Any

from clients.errors import ClientError, InvalidArgumentError, UnavailableError

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
# The runtime needs no clean-up (e.g. the namespace given to ADD does not exist).
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
# STATUS only: ADD cannot be served now.
NOT_AVAILABLE = 50
# Codes 100+ are the plugin's own; like the reference plugins, everything that
# is not one of the above is 999 with cnm's own message.
CNM_ERROR = 999


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def result(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def unreachable(exc: UnavailableError, address: str) -> str:
    """A short message for a transport failure (the gRPC text goes to details);
    a cnm server's own UNAVAILABLE message (e.g. a host down) is kept."""
    if exc.reason in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return f"cannot reach the cnm controller at {address}"
    return exc.message


def from_client_error(exc: ClientError, address: str, *, invalid: int = INVALID_CONFIG) -> CniError:
    """The CNI error for a failed controller call. A controller that cannot be
    reached (or times out) is transient: 11, the runtime retries later.
    `invalid` is the code for INVALID_ARGUMENT (what the caller sent came from
    the configuration, or from the environment)."""
    if isinstance(exc, UnavailableError):
        return CniError(TRY_AGAIN_LATER, unreachable(exc, address), exc.message)
    if isinstance(exc, InvalidArgumentError):
        return CniError(invalid, exc.message, exc.reason)
    return CniError(CNM_ERROR, exc.message, exc.reason)
