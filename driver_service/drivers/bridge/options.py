"""The bridge driver's options, under libnetwork's keys, parsed once into a frozen value.

Everything is checked here, before any kernel step: an unknown
`com.docker.network.bridge.*` key (a typo would otherwise be silently
ignored), a bridge name that is not a valid interface name, a boolean that is
not one, an MTU outside 68..65535, a host binding that is not an IPv4 address.
Other keys (labels, generic options meant for someone else) are ignored, as
libnetwork does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from driver_service.constants import (
    BRIDGE_ENABLE_ICC,
    BRIDGE_ENABLE_IP_MASQUERADE,
    BRIDGE_HOST_BINDING_IPV4,
    BRIDGE_NAME,
    BRIDGE_OPTION_PREFIX,
    DRIVER_MTU,
)
from driver_service.osl import validate
from services.errors import InvalidArgument

KNOWN_BRIDGE_KEYS = frozenset(
    {BRIDGE_NAME, BRIDGE_ENABLE_ICC, BRIDGE_ENABLE_IP_MASQUERADE, BRIDGE_HOST_BINDING_IPV4}
)
DEFAULT_BRIDGE_PREFIX = "br-"
SHORT_ID = 12

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class BridgeOptions:
    bridge_name: str
    enable_icc: bool = True
    enable_ip_masquerade: bool = True
    host_binding_ipv4: str = "0.0.0.0"
    # None: the MTU of the host's default-route interface, decided at create.
    mtu: int | None = None

    def to_data(self, mtu: int) -> dict[str, str]:
        """The form recorded with the network (NetworkRecord.data)."""
        return {
            "bridge": self.bridge_name,
            "mtu": str(mtu),
            "icc": str(self.enable_icc).lower(),
            "masquerade": str(self.enable_ip_masquerade).lower(),
            "host_binding_ipv4": self.host_binding_ipv4,
        }


@dataclass(frozen=True)
class BridgeConfig:
    """A network's bridge settings as recorded (every value decided)."""

    bridge_name: str
    mtu: int
    enable_icc: bool
    enable_ip_masquerade: bool
    host_binding_ipv4: str

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> BridgeConfig:
        return cls(
            bridge_name=data["bridge"],
            mtu=int(data["mtu"]),
            enable_icc=data["icc"] == "true",
            enable_ip_masquerade=data["masquerade"] == "true",
            host_binding_ipv4=data["host_binding_ipv4"],
        )


def _bool(key: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidArgument(
        f"invalid value {value!r} for option {key}: expected true or false",
        reason="INVALID_OPTION",
        metadata={"option": key},
    )


def parse(network_id: str, options: Mapping[str, str]) -> BridgeOptions:
    unknown = sorted(
        k for k in options if k.startswith(BRIDGE_OPTION_PREFIX) and k not in KNOWN_BRIDGE_KEYS
    )
    if unknown:
        raise InvalidArgument(
            f"unknown bridge option {unknown[0]!r} (known: {', '.join(sorted(KNOWN_BRIDGE_KEYS))})",
            reason="INVALID_OPTION",
            metadata={"option": unknown[0]},
        )
    name = options.get(BRIDGE_NAME) or f"{DEFAULT_BRIDGE_PREFIX}{network_id[:SHORT_ID]}"
    validate.ifname(name, f"bridge name (option {BRIDGE_NAME})")
    mtu = None
    if options.get(DRIVER_MTU):
        raw = options[DRIVER_MTU].strip()
        try:
            value = int(raw)
        except ValueError:
            raise InvalidArgument(
                f"invalid MTU {raw!r} (option {DRIVER_MTU}): must be an integer",
                reason="INVALID_OPTION",
                metadata={"option": DRIVER_MTU},
            ) from None
        mtu = validate.mtu(value)
    binding = options.get(BRIDGE_HOST_BINDING_IPV4, "").strip() or "0.0.0.0"
    try:
        ipaddress.IPv4Address(binding)
    except ValueError:
        raise InvalidArgument(
            f"invalid host binding {binding!r} (option {BRIDGE_HOST_BINDING_IPV4}): "
            "expected an IPv4 address",
            reason="INVALID_OPTION",
            metadata={"option": BRIDGE_HOST_BINDING_IPV4},
        ) from None
    return BridgeOptions(
        bridge_name=name,
        enable_icc=_bool(BRIDGE_ENABLE_ICC, options.get(BRIDGE_ENABLE_ICC, "true")),
        enable_ip_masquerade=_bool(
            BRIDGE_ENABLE_IP_MASQUERADE, options.get(BRIDGE_ENABLE_IP_MASQUERADE, "true")
        ),
        host_binding_ipv4=binding,
        mtu=mtu,
    )
