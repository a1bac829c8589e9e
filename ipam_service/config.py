"""Configuration of the IPAM service (`cnm-ipam`, section `[ipam]`).

IPAM needs nothing beyond the keys every service has: it keeps no state of its
own, and every fact (pools, addresses, id ranges) lives in Redis.
"""

from __future__ import annotations

import dataclasses

from services.config import CommonConfig


@dataclasses.dataclass(frozen=True)
class IpamConfig(CommonConfig):
    """CommonConfig only (listen, redis_url, redis_prefix, logging, TLS)."""
