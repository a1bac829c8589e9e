"""cnm's Python client (`clients.client.Client`) and the `cnmctl` CLI (`clients.cli`)."""

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
    "PortBinding",
    "PortMapping",
    "PortSpecError",
    "UnavailableError",
    "parse_port_spec",
]
