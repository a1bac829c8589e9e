"""Configuration of the IPAM service (`cnm-ipam`, section `[ipam]`).

IPAM needs nothing beyond the keys every service has: it keeps no state of its
own, and every fact (pools, addresses, id ranges) lives in Redis.
"""

from __future__ import annotations

import dataclasses

from services.config import CommonConfig, ConfigError


@dataclasses.dataclass(frozen=True)
class IpamConfig(CommonConfig):
    """CommonConfig (listen, redis_url, redis_prefix, logging, TLS), plus where
    remote IPAM plugins are looked for first (then in Docker's directories)."""

    # Env CNM_PLUGIN_DIRS, comma-separated; the same key as the driver service's.
    plugin_dirs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for d in self.plugin_dirs:
            if not d.startswith("/"):
                raise ConfigError(f"plugin_dirs: {d!r} must be an absolute path")
