"""cnm's Python client (`clients.client.Client`) and the `cnmctl` CLI (`clients.cli`)."""

import os

# gRPC core prints a line of its own on stderr for every failed TLS handshake
# (a wrong CA...), next to cnmctl's one error line; read once, at import.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from clients.client import Client, EndpointOptions, IpamConfig, PortBinding
from clients.errors import (
    AbortedError,
    AlreadyExistsError,
    ClientError,
    DeadlineExceededError,
    ExhaustedError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from clients.portspec import PortMapping, PortSpecError, parse_port_spec

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "Client",
    "ClientError",
    "DeadlineExceededError",
    "EndpointOptions",
    "ExhaustedError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "IpamConfig",
    "NotFoundError",
    "PermissionDeniedError",
    "PortBinding",
    "PortMapping",
    "PortSpecError",
    "UnavailableError",
    "parse_port_spec",
]
