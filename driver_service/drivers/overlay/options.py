"""The overlay driver's options and recorded settings, parsed once into frozen values.

Keys:
- `com.docker.network.driver.overlay.vxlanid_list` (libnetwork's): the
  network's VNI. The controller allocates it from IPAM's id allocator when
  the network is created and passes it here; exactly one value.
- `com.cnm.overlay.vxlan_port`: the VXLAN UDP port of this network (default
  4789, the IANA port). libnetwork only has a daemon-wide `--data-path-port`;
  a per-network key lets two overlays use different ports.
- `com.docker.network.driver.mtu`: the MTU of the overlay's links; default
  the underlay's MTU minus the 50 bytes of VXLAN encapsulation
  (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).

An unknown `com.docker.network.driver.overlay.*` or `com.cnm.overlay.*` key is
an error (a typo would otherwise be ignored); other keys are ignored, as
libnetwork does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from driver_service.constants import DRIVER_MTU
from driver_service.drivers.common import netns_host_tag
from driver_service.osl import validate
from services.errors import InvalidArgument

VXLANID_LIST = "com.docker.network.driver.overlay.vxlanid_list"
VXLAN_PORT = "com.cnm.overlay.vxlan_port"
_PREFIXES = ("com.docker.network.driver.overlay.", "com.cnm.overlay.")
KNOWN_KEYS = frozenset({VXLANID_LIST, VXLAN_PORT})

DEFAULT_VXLAN_PORT = 4789
# Outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8) headers.
VXLAN_OVERHEAD = 50

# Links inside an overlay's own namespace: the names are private to it.
BRIDGE = "br0"
VXLAN = "vxlan0"
# Marks the overlay namespaces of one host: <netns_prefix>ov-<host tag>-<12 hex>.
NETNS_KIND = "ov-"
SHORT_ID = 12


@dataclass(frozen=True)
class OverlayConfig:
    """A network's overlay settings as recorded with it on one host (every value decided)."""

    vni: int
    port: int
    mtu: int
    # This host's VTEP address (the driver's --advertise-addr) when the network was made.
    vtep: str
    # The namespace holding the network's bridge and VXLAN device on this host.
    netns: str

    def to_data(self) -> dict[str, str]:
        return {
            "vni": str(self.vni),
            "port": str(self.port),
            "mtu": str(self.mtu),
            "vtep": self.vtep,
            "netns": self.netns,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> OverlayConfig:
        return cls(
            vni=int(data["vni"]),
            port=int(data["port"]),
            mtu=int(data["mtu"]),
            vtep=data["vtep"],
            netns=data["netns"],
        )


@dataclass(frozen=True)
class OverlayOptions:
    vni: int
    port: int = DEFAULT_VXLAN_PORT
    # None: the underlay's MTU minus VXLAN_OVERHEAD, decided at create.
    mtu: int | None = None


def _invalid(key: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, reason="INVALID_OPTION", metadata={"option": key})


def _integer(key: str, raw: str, what: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise _invalid(key, f"invalid {what} {raw!r} (option {key}): must be an integer") from None


def parse(network_id: str, options: Mapping[str, str]) -> OverlayOptions:
    unknown = sorted(k for k in options if k.startswith(_PREFIXES) and k not in KNOWN_KEYS)
    if unknown:
        raise _invalid(
            unknown[0],
            f"unknown overlay option {unknown[0]!r} (known: {', '.join(sorted(KNOWN_KEYS))})",
        )
    raw = options.get(VXLANID_LIST, "").strip()
    if not raw:
        raise _invalid(
            VXLANID_LIST,
            f"overlay network {network_id!r} has no VNI (option {VXLANID_LIST}): "
            "overlay networks are created through the controller, which allocates one",
        )
    values = [v for v in raw.split(",") if v.strip()]
    if len(values) != 1:
        raise _invalid(
            VXLANID_LIST, f"option {VXLANID_LIST} must hold exactly one VNI, got {raw!r}"
        )
    vni = _integer(VXLANID_LIST, values[0], "VNI")
    try:
        validate.vni(vni)
    except InvalidArgument as e:
        raise _invalid(VXLANID_LIST, f"option {VXLANID_LIST}: {e}") from None
    port = DEFAULT_VXLAN_PORT
    if options.get(VXLAN_PORT, "").strip():
        port = _integer(VXLAN_PORT, options[VXLAN_PORT], "VXLAN UDP port")
        if not 1 <= port <= 65535:
            raise _invalid(VXLAN_PORT, f"invalid VXLAN UDP port {port} (option {VXLAN_PORT})")
    mtu = None
    if options.get(DRIVER_MTU, "").strip():
        mtu = _integer(DRIVER_MTU, options[DRIVER_MTU], "MTU")
        try:
            validate.mtu(mtu)
        except InvalidArgument as e:
            raise _invalid(DRIVER_MTU, f"option {DRIVER_MTU}: {e}") from None
    return OverlayOptions(vni=vni, port=port, mtu=mtu)


def host_tag(netns_prefix: str, host_id: str) -> str:
    """The part of an overlay namespace's name that says which host made it."""
    return netns_host_tag(netns_prefix, NETNS_KIND, host_id, SHORT_ID)


def netns_name(netns_prefix: str, host_id: str, network_id: str) -> str:
    return f"{netns_prefix}{NETNS_KIND}{host_tag(netns_prefix, host_id)}-{network_id[:SHORT_ID]}"


def host_netns_prefix(netns_prefix: str, host_id: str) -> str:
    """Every overlay namespace of this host starts with this."""
    return f"{netns_prefix}{NETNS_KIND}{host_tag(netns_prefix, host_id)}-"
