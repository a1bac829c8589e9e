"""Configuration of the IPAM service (`cnm-ipam`, section `[ipam]`).

IPAM keeps no state of its own: every fact (pools, addresses, id ranges) lives
in Redis. Its own keys say where remote IPAM plugins are and which address
spaces exist besides the two default ones.
"""

from __future__ import annotations

import dataclasses

from services.config import CommonConfig, ConfigError
from services.errors import InvalidArgument

from .spaces import validate_space


@dataclasses.dataclass(frozen=True)
class IpamConfig(CommonConfig):
    """CommonConfig (listen, redis_url, redis_prefix, logging, TLS), plus where
    remote IPAM plugins are looked for first (then in Docker's directories)."""

    # Env CNM_PLUGIN_DIRS, comma-separated; the same key as the driver service's.
    plugin_dirs: tuple[str, ...] = ()
    # Address spaces besides LocalDefault and GlobalDefault that pools may be
    # requested in (env CNM_ADDRESS_SPACES, comma-separated); any other is refused.
    address_spaces: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for space in self.address_spaces:
            try:
                validate_space(space)
            except InvalidArgument as e:
                raise ConfigError(f"address_spaces: {e}") from None
        for d in self.plugin_dirs:
            if not d.startswith("/"):
                raise ConfigError(f"plugin_dirs: {d!r} must be an absolute path")
