"""Controller configuration: the common keys plus where IPAM is and how long to wait."""

from __future__ import annotations

import dataclasses

from services.config import CommonConfig


@dataclasses.dataclass(frozen=True)
class ControllerConfig(CommonConfig):
    # The IPAM service's address (unix:///path or HOST:PORT).
    ipam: str = "unix:///run/cnm/ipam.sock"
    # Upper bound of one call to a driver service or to IPAM; the caller's own
    # deadline shortens it further.
    driver_timeout: float = 10.0
    # Heartbeat TTL assumed for a host record that does not carry its own.
    host_ttl: float = 10.0
    # How often the reconciler looks for intents left by a dead controller.
    reconcile_interval: float = 1.0
    # How long this controller's liveness key survives without renewal: after a
    # kill -9, its unfinished intents are taken over once this has passed.
    instance_ttl: float = 4.0
    # How long a request_id keeps its first result.
    request_ttl: float = 86400.0
    # Events kept in the stream (approximate trim).
    events_retained: int = 100_000
    # Where overlay networks' VNIs are taken from ("LO-HI" within 256-16777215).
    overlay_vni_range: str = "256-16777215"
