"""Address spaces and their predefined pools: pure policy, no I/O.

A space is a namespace of subnets: pools of one space never overlap, pools of
different spaces may (libnetwork's model). `LocalDefault` (local-scope
networks) and `GlobalDefault` (global-scope networks) come with predefined
pools, handed out in order when a request names no subnet:

  LocalDefault  IPv4  172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/20 ... 192.168.240.0/20
                IPv6  fd00:0:0:0::/64, fd00:0:0:1::/64 ... (the /64s of fd00::/48)
  GlobalDefault IPv4  10.0.0.0/24, 10.0.1.0/24 ... 10.255.255.0/24
                IPv6  fd01:0:0:0::/64, fd01:0:0:1::/64 ... (the /64s of fd01::/48)

Finding the first free predefined pool walks the taken subnets once (sorted),
so its cost grows with the number of pools in the space, not with the 65,536
candidates of GlobalDefault.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from services.errors import InvalidArgument
from services.limits import shown

__all__ = [
    "GLOBAL_DEFAULT",
    "LOCAL_DEFAULT",
    "Network",
    "PredefinedBase",
    "check_declared",
    "first_free_subnet",
    "find_overlap",
    "overlaps",
    "predefined_bases",
    "validate_space",
]

LOCAL_DEFAULT = "LocalDefault"
GLOBAL_DEFAULT = "GlobalDefault"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# No "/" (it separates the parts of a pool id) and no braces (Redis hash tags).
_SPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class PredefinedBase:
    """`base` split into consecutive subnets of prefix length `size`, in address order."""

    base: Network
    size: int


def _bases(*items: tuple[str, int]) -> tuple[PredefinedBase, ...]:
    return tuple(PredefinedBase(ipaddress.ip_network(b), s) for b, s in items)


_PREDEFINED: dict[tuple[str, bool], tuple[PredefinedBase, ...]] = {
    (LOCAL_DEFAULT, False): _bases(
        *((f"172.{n}.0.0/16", 16) for n in range(17, 32)), ("192.168.0.0/16", 20)
    ),
    (LOCAL_DEFAULT, True): _bases(("fd00::/48", 64)),
    (GLOBAL_DEFAULT, False): _bases(("10.0.0.0/8", 24)),
    (GLOBAL_DEFAULT, True): _bases(("fd01::/48", 64)),
}


def validate_space(space: str) -> str:
    """An address space name: 1-64 characters of [A-Za-z0-9_.-], starting alphanumeric."""
    if not space:
        raise InvalidArgument(
            "address_space is empty: give LocalDefault, GlobalDefault or a space name",
            reason="INVALID_ADDRESS_SPACE",
        )
    if not _SPACE.match(space):
        raise InvalidArgument(
            f"invalid address space {shown(space)}: use 1-64 characters of [A-Za-z0-9_.-], "
            "starting with a letter or digit",
            reason="INVALID_ADDRESS_SPACE",
        )
    return space


def check_declared(space: str, declared: Collection[str]) -> str:
    """`space` when it is LocalDefault, GlobalDefault or one of `declared` (the
    IPAM service's `address_spaces`); InvalidArgument otherwise, as libnetwork
    refuses a space its IPAM does not know."""
    if space not in (LOCAL_DEFAULT, GLOBAL_DEFAULT) and space not in declared:
        raise InvalidArgument(
            f"cannot find address space {shown(space)}: use {LOCAL_DEFAULT}, {GLOBAL_DEFAULT}"
            " or a space named in the IPAM service's address_spaces",
            reason="UNKNOWN_ADDRESS_SPACE",
            metadata={"address_space": space},
        )
    return space


def predefined_bases(space: str, v6: bool) -> Sequence[PredefinedBase]:
    """The predefined pools of `space` for one family; empty for spaces without any."""
    return _PREDEFINED.get((space, v6), ())


def overlaps(a: Network, b: Network) -> bool:
    """Whether two subnets share an address (different families never do)."""
    return a.version == b.version and a.overlaps(b)  # type: ignore[arg-type]


def find_overlap(candidate: Network, taken: Iterable[Network]) -> Network | None:
    """The first taken subnet that overlaps `candidate`, if any."""
    for net in taken:
        if overlaps(candidate, net):
            return net
    return None


def first_free_subnet(bases: Sequence[PredefinedBase], taken: Iterable[Network]) -> Network | None:
    """The first subnet of `bases` (in order) that overlaps none of `taken`, or None.

    One pass over the taken intervals per base, sorted by start: a candidate that
    collides jumps to the first aligned block after the collider's end, so the
    walk costs O(taken log taken), whatever the number of candidates.
    """
    intervals = sorted((int(n.network_address), int(n.broadcast_address), n.version) for n in taken)
    for pb in bases:
        base = pb.base
        block = 1 << (base.max_prefixlen - pb.size)
        lo, hi = int(base.network_address), int(base.broadcast_address)
        cand = lo
        for start, end, version in intervals:
            if version != base.version or end < cand:
                continue
            if start > cand + block - 1:
                break
            cand = ((end + 1 + block - 1) // block) * block  # align up past the collider
            if cand > hi:
                break
        if cand + block - 1 <= hi:
            cls = ipaddress.IPv4Network if base.version == 4 else ipaddress.IPv6Network
            return cls((cand, pb.size))
    return None
