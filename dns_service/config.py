"""Configuration of the resolver (`cnm-dns`, section `[dns]`)."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket

from services.config import CommonConfig, ConfigError

_HOST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclasses.dataclass(frozen=True)
class ResolverConfig(CommonConfig):
    # The host whose sandboxes this resolver serves; default: the hostname (as cnm-driver).
    host_id: str = ""
    # Where it answers inside every sandbox of the host (Docker's address).
    address: str = "127.0.0.11"
    port: int = 53
    # TTL of the records it owns (Docker's 600 s).
    ttl: int = 600
    # Upstreams of names it does not own: the sandbox's --dns servers, else these.
    host_resolv_conf: str = "/etc/resolv.conf"
    upstream_timeout: float = 2.0
    # Threads for forwarded queries and TCP connections.
    workers: int = 8


def finish(cfg: ResolverConfig) -> ResolverConfig:
    host_id = cfg.host_id or socket.gethostname()
    if not _HOST_ID.fullmatch(host_id):
        raise ConfigError(f"host id {host_id!r}: letters, digits, '_', '.', '-' (max 63)")
    try:
        address = ipaddress.ip_address(cfg.address)
    except ValueError:
        raise ConfigError(f"address {cfg.address!r}: not an IP address") from None
    if address.version != 4:
        raise ConfigError(f"address {cfg.address!r}: an IPv4 address is expected")
    if not 0 < cfg.port < 65536:
        raise ConfigError(f"port {cfg.port}: expected 1..65535")
    if not 0 <= cfg.ttl <= 86400:
        raise ConfigError(f"ttl {cfg.ttl}: expected 0..86400 seconds")
    if not 0 < cfg.upstream_timeout <= 30:
        raise ConfigError(f"upstream_timeout {cfg.upstream_timeout}: expected (0, 30] seconds")
    if not 1 <= cfg.workers <= 256:
        raise ConfigError(f"workers {cfg.workers}: expected 1..256")
    return dataclasses.replace(cfg, host_id=host_id)
