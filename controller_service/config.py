"""Controller configuration: the common keys plus where IPAM is and how long to wait."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from services.config import CommonConfig, ConfigError


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
    # Make Docker's built-in `host` and `none` networks at start (cnmd sets it).
    builtin_networks: bool = False
    # Events kept in the stream (approximate trim).
    events_retained: int = 100_000
    # Where overlay networks' VNIs are taken from ("LO-HI" within 256-16777215).
    overlay_vni_range: str = "256-16777215"
    # The certificate this controller presents to IPAM and driver services on
    # TCP (mutual TLS), and the CA their server certificates must chain to.
    # Empty: the listener's tls_cert, tls_key and tls_ca.
    client_tls_cert: str = ""
    client_tls_key: str = ""
    client_tls_ca: str = ""

    def client_tls(self) -> dict[str, str]:
        """dial()'s TLS keywords for calls to IPAM and driver services."""
        return {
            "tls_cert": self.client_tls_cert or self.tls_cert,
            "tls_key": self.client_tls_key or self.tls_key,
            "tls_ca": self.client_tls_ca or self.tls_ca,
        }

    def __post_init__(self) -> None:
        given = [self.client_tls_cert, self.client_tls_key]
        if any(given) and not all(given):
            raise ConfigError("client_tls_cert and client_tls_key must be given together")
        for path in filter(None, [*given, self.client_tls_ca]):
            if not Path(path).is_file():
                raise ConfigError(f"TLS file {path}: not found")
