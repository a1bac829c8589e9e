"""Which option keys each built-in driver understands; anything else is refused.

An option cnm does not know used to be accepted and ignored: a typo
(`com.docker.network.driver.mut=1400`) or a key meant for another driver
silently did nothing. Now CreateNetwork, CreateEndpoint and Join refuse a key
the network's driver does not know (INVALID_ARGUMENT, reason INVALID_OPTION,
metadata "option"), before anything is made. Remote (plugin) drivers are not
in the table: they get every option and judge them themselves. Labels are
separate and stay free-form.

Keys every built-in driver accepts on a network (cnm's sandbox layer reads
them, not the driver): `com.docker.network.container_iface_prefix` and
`cnm.network.legacy_hosts`. The Docker plugin shim passes only the user's
`-o` options (Docker's `com.docker.network.generic` map) as network options;
Docker's other keys (internal, enable_ipv6, portmap, exposedports) become
request fields, so no Docker key needs an exception here.
"""

from __future__ import annotations

from collections.abc import Mapping

from driver_service.constants import (
    CONTAINER_IFACE_PREFIX,
    DRIVER_BRIDGE,
    DRIVER_HOST,
    DRIVER_MACVLAN,
    DRIVER_MTU,
    DRIVER_NULL,
    DRIVER_OVERLAY,
    ENDPOINT_DEFAULT_ROUTE_OPTION,
    ENDPOINT_IFNAME_OPTION,
    MACVLAN_MODE,
    MACVLAN_PARENT,
)
from driver_service.drivers.bridge.options import KNOWN_BRIDGE_KEYS
from driver_service.drivers.overlay.options import KNOWN_KEYS as KNOWN_OVERLAY_KEYS
from driver_service.sandbox_files import LEGACY_HOSTS_OPTION
from services.errors import InvalidArgument

COMMON_NETWORK_KEYS = frozenset({CONTAINER_IFACE_PREFIX, LEGACY_HOSTS_OPTION})

NETWORK_KEYS: dict[str, frozenset[str]] = {
    DRIVER_BRIDGE: KNOWN_BRIDGE_KEYS | {DRIVER_MTU},
    DRIVER_OVERLAY: KNOWN_OVERLAY_KEYS | {DRIVER_MTU},
    DRIVER_MACVLAN: frozenset({MACVLAN_PARENT, MACVLAN_MODE, DRIVER_MTU}),
    # null and host take no options at all (drivers/null.py says so itself).
    DRIVER_NULL: frozenset(),
    DRIVER_HOST: frozenset(),
}

# The sandbox layer's endpoint options (manager.py), the same for every built-in driver.
ENDPOINT_KEYS = frozenset({ENDPOINT_IFNAME_OPTION, ENDPOINT_DEFAULT_ROUTE_OPTION})

# No built-in driver reads a Join option (they reach remote plugins only).
JOIN_KEYS: frozenset[str] = frozenset()


def _refuse_unknown(
    what: str, driver: str, options: Mapping[str, str], known: frozenset[str]
) -> None:
    unknown = sorted(k for k in options if k not in known)
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise InvalidArgument(
            f"unknown {what} option {unknown[0]!r} for the {driver} driver (known: {listed})",
            reason="INVALID_OPTION",
            metadata={"option": unknown[0], "driver": driver},
        )


def check_network(driver: str, options: Mapping[str, str]) -> None:
    if driver in NETWORK_KEYS:
        _refuse_unknown("network", driver, options, NETWORK_KEYS[driver] | COMMON_NETWORK_KEYS)


def check_endpoint(driver: str, options: Mapping[str, str]) -> None:
    if driver in NETWORK_KEYS:
        _refuse_unknown("endpoint", driver, options, ENDPOINT_KEYS)


def check_join(driver: str, options: Mapping[str, str]) -> None:
    if driver in NETWORK_KEYS:
        _refuse_unknown("join", driver, options, JOIN_KEYS)
