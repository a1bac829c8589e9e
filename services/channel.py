"""Outgoing calls: channels by address, a deadline on every call.

Every service that calls another (controller -> ipam, controller -> driver)
dials through `dial`, so no call can hang without a deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from services.address import parse_address

DEFAULT_TIMEOUT = 10.0


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class DeadlineInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `timeout` to calls made without one (streams keep theirs: Watch is long)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def _with_deadline(self, details: Any) -> Any:
        if details.timeout is not None:
            return details
        return _CallDetails(
            details.method,
            self.timeout,
            details.metadata,
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._with_deadline(details), request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(details, request)


def channel_credentials(tls_ca: str, tls_cert: str = "", tls_key: str = "") -> Any:
    """TLS trusting `tls_ca`, showing the client certificate `tls_cert` when given
    (every cnm TCP listener requires one: mutual TLS)."""
    return grpc.ssl_channel_credentials(
        root_certificates=Path(tls_ca).read_bytes(),
        private_key=Path(tls_key).read_bytes() if tls_key else None,
        certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
    )


def dial(
    address: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    tls_cert: str = "",
    tls_key: str = "",
    tls_ca: str = "",
) -> grpc.Channel:
    """A channel to `unix:///path` or `host:port` (mutual TLS when files are given)."""
    addr = parse_address(address)
    options = [
        ("grpc.enable_retries", 0),
        ("grpc.max_receive_message_length", 64 << 20),
        # Callers re-dial a peer that was UNAVAILABLE (it may have restarted): with
        # gRPC's global subchannel pool the new channel would inherit the old
        # connection's reconnect backoff (up to minutes) and keep failing at once.
        ("grpc.use_local_subchannel_pool", 1),
    ]
    if addr.kind == "tcp" and tls_ca:
        creds = channel_credentials(tls_ca, tls_cert, tls_key)
        channel = grpc.secure_channel(addr.grpc_target, creds, options=options)
    else:
        channel = grpc.insecure_channel(addr.grpc_target, options=options)
    return grpc.intercept_channel(channel, DeadlineInterceptor(timeout))
