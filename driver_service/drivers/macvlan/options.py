"""The macvlan driver's options and recorded settings, parsed once into frozen values.

Keys (libnetwork's, unprefixed as Docker's CLI passes them):
- `parent`: the host interface the containers' macvlan children hang off
  (e.g. `eth0`), or an 802.1q sub-interface `eth0.10` that the driver makes
  when it does not exist yet. Empty (or an `--internal` network): the driver
  makes an isolated parent of its own (see driver.py).
- `macvlan_mode`: bridge (default), private, vepa or passthru.

`com.docker.network.driver.mtu` is refused: a macvlan child always has its
parent's MTU. Other keys are ignored, as libnetwork does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from driver_service import osl
from driver_service.constants import DRIVER_MTU, MACVLAN_MODE, MACVLAN_PARENT
from driver_service.drivers.common import netns_host_tag
from driver_service.osl import validate
from services.errors import InvalidArgument

DEFAULT_MODE = "bridge"
PASSTHRU = "passthru"
# An isolated parent is a veth pair inside a namespace of its own:
# <netns_prefix>mv-<host tag>-<12 hex>, holding ISOLATED_PARENT and its peer.
NETNS_KIND = "mv-"
SHORT_ID = 12
ISOLATED_PARENT = "mvparent"
ISOLATED_PEER = "mvpeer"
# What the driver made for a network, deleted with it.
MADE_NOTHING = ""
MADE_VLAN = "vlan"
MADE_ISOLATED = "isolated"


@dataclass(frozen=True)
class MacvlanOptions:
    # As given ("" for none); see `isolated`.
    parent: str
    mode: str


@dataclass(frozen=True)
class MacvlanConfig:
    """A network's macvlan settings as recorded with it (every value decided)."""

    # The link the children hang off, in `parent_netns` ("" = the host's namespace).
    parent: str
    parent_netns: str
    mode: str
    # MADE_*: the parent this network made and removes again.
    made: str

    def to_data(self) -> dict[str, str]:
        return {
            "parent": self.parent,
            "parent_netns": self.parent_netns,
            "mode": self.mode,
            "made": self.made,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> MacvlanConfig:
        return cls(
            parent=data["parent"],
            parent_netns=data["parent_netns"],
            mode=data["mode"],
            made=data["made"],
        )

    @property
    def host_parent(self) -> str:
        """The host interface used ("" for an isolated parent)."""
        return "" if self.parent_netns else self.parent


def _bad(option: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, reason="INVALID_OPTION", metadata={"option": option})


def parse(options: Mapping[str, str]) -> MacvlanOptions:
    if DRIVER_MTU in options:
        raise _bad(DRIVER_MTU, f"macvlan takes its MTU from the parent interface: {DRIVER_MTU}")
    parent = options.get(MACVLAN_PARENT, "").strip()
    if parent:
        validate.ifname(parent, f"parent interface (option {MACVLAN_PARENT})")
        if parent == "lo":
            raise _bad(MACVLAN_PARENT, "loopback interface is not a valid macvlan parent link")
        osl.parse_vlan_parent(parent)
    mode = options.get(MACVLAN_MODE, "").strip() or DEFAULT_MODE
    if mode not in osl.MACVLAN_MODES:
        raise _bad(
            MACVLAN_MODE,
            f"requested macvlan mode {mode!r} is not valid "
            f"(one of {', '.join(osl.MACVLAN_MODES)}; {DEFAULT_MODE!r} is the default)",
        )
    return MacvlanOptions(parent=parent, mode=mode)


def host_netns_prefix(netns_prefix: str, host_id: str) -> str:
    """Every isolated-parent namespace of this host starts with this."""
    return (
        f"{netns_prefix}{NETNS_KIND}{netns_host_tag(netns_prefix, NETNS_KIND, host_id, SHORT_ID)}-"
    )


def netns_name(netns_prefix: str, host_id: str, network_id: str) -> str:
    return f"{host_netns_prefix(netns_prefix, host_id)}{network_id[:SHORT_ID]}"
