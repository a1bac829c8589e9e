"""The driver's NOT_FOUND errors for objects named by id, worded once."""

from __future__ import annotations

from services.errors import NotFound


def no_network(network_id: str) -> NotFound:
    return NotFound(
        f"no such network {network_id!r} on this host",
        reason="NETWORK_NOT_FOUND",
        metadata={"network_id": network_id},
    )


def no_endpoint(endpoint_id: str, network_id: str) -> NotFound:
    return NotFound(
        f"no such endpoint {endpoint_id!r} on network {network_id!r}",
        reason="ENDPOINT_NOT_FOUND",
        metadata={"endpoint_id": endpoint_id, "network_id": network_id},
    )


def no_sandbox(sandbox_id: str) -> NotFound:
    return NotFound(
        f"no such sandbox {sandbox_id!r} on this host",
        reason="SANDBOX_NOT_FOUND",
        metadata={"sandbox_id": sandbox_id},
    )
