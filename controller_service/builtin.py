"""The built-in networks every cnm deployment has, as Docker has them:
`host` (driver host) and `none` (driver null), made on first start, never
removed, never a second of either."""

from __future__ import annotations

from controller_service.models import Network

# name -> driver
BUILTIN_NETWORKS = {"host": "host", "none": "null"}
# Drivers of which only the built-in network may exist.
SINGLETON_DRIVERS = frozenset(BUILTIN_NETWORKS.values())


def is_builtin(net: Network) -> bool:
    return BUILTIN_NETWORKS.get(net.name) == net.driver
