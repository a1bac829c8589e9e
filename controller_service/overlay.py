"""VNIs of overlay networks: allocated by the controller, carried in the network's options.

An overlay network needs one VXLAN network identifier, the same on every
host, unique in the cluster. The controller takes it from IPAM's id
allocator (range "vxlan", 256 .. 2^24-1, created idempotently on first use;
ids below 256 are left out as libnetwork does) when the network is created,
owned by the network id, and records it in the network's options under
libnetwork's key `com.docker.network.driver.overlay.vxlanid_list`: that is
how each host's driver learns it (CreateNetwork options), and how `network
inspect` shows it. A VNI given by the user under that key is taken exactly
(ALREADY_EXISTS when another network holds it). It goes back when the
network is deleted or its creation rolled back.

`overlay_vni_range` (controller config, e.g. "256-4095") narrows where
automatic VNIs are taken from; the stored range keeps its full bounds, so
controllers configured differently still agree on it.

The store may lose its data (Redis back empty) while hosts still carry
overlay networks: IPAM then offers their VNIs again. Each host's driver
records the VNIs it uses in `overlay:host:<host>:vnis` (VNI -> network id,
put back by the driver after such a loss), and a VNI some host uses for
another network is never handed out: it is held in IPAM for that network
instead, and a user asking for it gets ALREADY_EXISTS. The id range itself
is created again when IPAM lost it.

Known gap: a controller killed between IPAM's GetId answer and the network
record's update leaks that one VNI (IPAM offers no lookup by owner for ids,
unlike pools); it stays owned by the dead network's id in IPAM.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping

from controller_service.ipam_client import IpamClient
from services.errors import AlreadyExists, Exhausted, InvalidArgument, NotFound

log = logging.getLogger(__name__)

DRIVER_OVERLAY = "overlay"
# libnetwork's key (also the driver service's, driver_service/drivers/overlay/options.py).
VXLANID_LIST = "com.docker.network.driver.overlay.vxlanid_list"
VXLAN_PORT = "com.cnm.overlay.vxlan_port"
_PREFIXES = ("com.docker.network.driver.overlay.", "com.cnm.overlay.")
KNOWN_KEYS = frozenset({VXLANID_LIST, VXLAN_PORT})
# Every key an overlay network takes (driver_service/option_keys.py has the
# table of all drivers): checked here because a global network reaches the
# hosts' drivers only at its first join, too late to refuse a typo.
_ACCEPTED = KNOWN_KEYS | {
    "com.docker.network.driver.mtu",
    "com.docker.network.container_iface_prefix",
    "cnm.network.legacy_hosts",
}
RANGE_NAME = "vxlan"
VNI_MIN = 256
VNI_MAX = (1 << 24) - 1
DEFAULT_VNI_RANGE = f"{VNI_MIN}-{VNI_MAX}"
# How many VNIs held by hosts for networks the store forgot are skipped per creation.
_MAX_SKIPPED = 64


def parse_range(text: str) -> tuple[int, int]:
    """ "LO-HI" inside [256, 2^24-1]; ValueError naming the problem."""
    lo_text, sep, hi_text = text.strip().partition("-")
    try:
        if not sep:
            raise ValueError
        lo, hi = int(lo_text), int(hi_text)
    except ValueError:
        raise ValueError(f"VNI range {text!r}: expected LO-HI, e.g. {DEFAULT_VNI_RANGE}") from None
    if not VNI_MIN <= lo <= hi <= VNI_MAX:
        raise ValueError(f"VNI range {text!r}: must satisfy {VNI_MIN} <= LO <= HI <= {VNI_MAX}")
    return lo, hi


def requested_vni(options: Mapping[str, str]) -> int | None:
    """The VNI a user asked for (validated), or None."""
    raw = options.get(VXLANID_LIST, "").strip()
    if not raw:
        return None
    try:
        vni = int(raw)
    except ValueError:
        raise InvalidArgument(
            f"invalid VNI {raw!r} (option {VXLANID_LIST}): expected one integer",
            reason="INVALID_OPTION",
            metadata={"option": VXLANID_LIST},
        ) from None
    if not VNI_MIN <= vni <= VNI_MAX:
        raise InvalidArgument(
            f"invalid VNI {vni} (option {VXLANID_LIST}): must be {VNI_MIN}..{VNI_MAX}",
            reason="INVALID_OPTION",
            metadata={"option": VXLANID_LIST},
        )
    return vni


def check_options(options: Mapping[str, str]) -> int | None:
    """The overlay's own option keys checked at creation, before anything is
    made (the hosts' drivers check them again); returns the requested VNI."""
    unknown = sorted(k for k in options if k.startswith(_PREFIXES) and k not in KNOWN_KEYS)
    if unknown:
        raise InvalidArgument(
            f"unknown overlay option {unknown[0]!r} (known: {', '.join(sorted(KNOWN_KEYS))})",
            reason="INVALID_OPTION",
            metadata={"option": unknown[0]},
        )
    unknown = sorted(k for k in options if k not in _ACCEPTED)
    if unknown:
        raise InvalidArgument(
            f"unknown network option {unknown[0]!r} for the overlay driver "
            f"(known: {', '.join(sorted(_ACCEPTED))})",
            reason="INVALID_OPTION",
            metadata={"option": unknown[0], "driver": DRIVER_OVERLAY},
        )
    raw = options.get(VXLAN_PORT, "").strip()
    if raw and not (raw.isdigit() and 1 <= int(raw) <= 65535):
        raise InvalidArgument(
            f"invalid VXLAN UDP port {raw!r} (option {VXLAN_PORT}): must be 1..65535",
            reason="INVALID_OPTION",
            metadata={"option": VXLAN_PORT},
        )
    return requested_vni(options)


def recorded_vni(options: Mapping[str, str]) -> int | None:
    try:
        return int(options[VXLANID_LIST])
    except (KeyError, ValueError):
        return None


class Vnis:
    def __init__(
        self,
        ipam: IpamClient,
        vni_range: str = DEFAULT_VNI_RANGE,
        used_by_host: Callable[[int], str | None] = lambda _vni: None,
    ) -> None:
        self.ipam = ipam
        self.lo, self.hi = parse_range(vni_range)
        self.used_by_host = used_by_host
        self._range_ready = False

    def _ensure_range(self) -> None:
        if not self._range_ready:
            self.ipam.create_id_range(RANGE_NAME, VNI_MIN, VNI_MAX)
            self._range_ready = True

    def _get_id(self, owner: str, **kw: int) -> int:
        self._ensure_range()
        try:
            return self.ipam.get_id(RANGE_NAME, owner=owner, **kw)
        except NotFound:
            # IPAM lost the range (the store came back empty): make it again.
            self._range_ready = False
            self._ensure_range()
            return self.ipam.get_id(RANGE_NAME, owner=owner, **kw)

    def allocate(self, network_id: str, name: str, wanted: int | None) -> int:
        """The network's VNI, owned by its id: `wanted`, else the lowest free one.
        Never one a host still uses for another network."""
        if wanted is not None:
            try:
                vni = self._get_id(network_id, id_=wanted)
            except AlreadyExists as e:
                raise self._taken(wanted, name, str(e)) from e
            user = self.used_by_host(vni)
            if user and user != network_id:
                self._hold(vni, user)
                raise self._taken(wanted, name, f"a host still uses it for network {user[:12]}")
            return vni
        for _ in range(_MAX_SKIPPED):
            try:
                vni = self._get_id(network_id, lo=self.lo, hi=self.hi)
            except Exhausted as e:
                raise Exhausted(
                    f"no free VNI for overlay network {name!r} in {self.lo}-{self.hi}: {e}",
                    reason="VNI_EXHAUSTED",
                ) from e
            user = self.used_by_host(vni)
            if not user or user == network_id:
                return vni
            self._hold(vni, user)
        raise Exhausted(
            f"no free VNI for overlay network {name!r}: {_MAX_SKIPPED} in a row are still "
            "used by hosts for networks the store no longer knows",
            reason="VNI_EXHAUSTED",
        )

    @staticmethod
    def _taken(vni: int, name: str, why: str) -> AlreadyExists:
        return AlreadyExists(
            f"VNI {vni} asked for by overlay network {name!r} is already used "
            f"by another network ({why})",
            reason="VNI_TAKEN",
        )

    def _hold(self, vni: int, user: str) -> None:
        """Give `vni` to the network a host still uses it for (the store forgot it)."""
        log.warning("VNI %d is still used by network %s on a host; not handing it out", vni, user)
        self.release(vni)
        # AlreadyExists: someone else holds it now, not free either way.
        with contextlib.suppress(AlreadyExists):
            self._get_id(user, id_=vni)

    def release(self, vni: int) -> None:
        """Idempotent."""
        try:
            self.ipam.release_id(RANGE_NAME, vni)
        except InvalidArgument as e:
            # Outside the stored range: never ours to release.
            log.warning("VNI %d not released: %s", vni, e)
