"""Pure IPAM policy: pool ids, pool geometry (address <-> ordinal), request validation.

No I/O here: `pools.py` turns these decisions into Redis writes. Every parser
raises InvalidArgument with the offending value in the message, before anything
is written, so bad input never leaves partial state.

Geometry of a pool (one bit sequence per pool, bit i = network address + i):
  * ordinal 0, the network address, is reserved (never handed out), and so is the
    last ordinal of an IPv4 pool (the broadcast address);
  * a pool larger than 2**64 addresses (an IPv6 prefix shorter than /64) is
    allocated from its first 2**64 addresses only (a bit sequence holds at most
    2**64 bits): more than any network can use, and a /64 is still exact;
  * a sub-pool restricts *dynamic* allocation to its ordinals; a preferred
    address may be anywhere in the pool (a gateway usually lies outside the
    sub-pool, as in libnetwork).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from services.errors import InvalidArgument
from services.limits import shown
from services.values import cidr

from .spaces import Network, validate_space

__all__ = [
    "AUX_ADDRESS_PREFIX",
    "GATEWAY_OWNER",
    "GATEWAY_REQUEST_TYPE",
    "REQUEST_ADDRESS_TYPE",
    "Address",
    "AddressRequest",
    "Allocation",
    "PoolGrant",
    "PoolId",
    "PoolInfo",
    "PoolRequest",
    "address_request",
    "parse_address",
    "parse_pool_id",
    "pool_request",
    "saturate_u64",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Options this service understands; other keys are passed through by libnetwork
# for other IPAM drivers and are ignored, but unknown keys under our own prefix
# are errors (most likely a typo).
OWN_OPTION_PREFIX = "cnm.ipam."
# RequestPool option "cnm.ipam.aux_address.<name>" = "<address>": reserved in the
# pool atomically with its creation, owner "aux:<name>" (Docker's --aux-address).
AUX_ADDRESS_PREFIX = "cnm.ipam.aux_address."
# RequestAddress option marking the gateway request, as libnetwork sends it.
REQUEST_ADDRESS_TYPE = "RequestAddressType"
GATEWAY_REQUEST_TYPE = "com.docker.network.gateway"
GATEWAY_OWNER = "gateway"

MAX_ORDINALS = 1 << 64
MAX_U64 = (1 << 64) - 1
_MAX_OWNER = 256
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_AUX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# --- parsing ------------------------------------------------------------------------------


def parse_address(what: str, text: str) -> tuple[Address, int | None]:
    """An address, optionally with a prefix length (returned, or None)."""
    try:
        if "/" in text:
            iface = ipaddress.ip_interface(text)
            address, prefixlen = iface.ip, iface.network.prefixlen
        else:
            address, prefixlen = ipaddress.ip_address(text), None
    except ValueError:
        raise InvalidArgument(f"invalid {what} {shown(text)}: not an IP address") from None
    if getattr(address, "scope_id", None):
        raise InvalidArgument(f"invalid {what} {shown(text)}: a zone (%...) has no place in a pool")
    return address, prefixlen


# --- pool ids and geometry ----------------------------------------------------------------


@dataclass(frozen=True)
class PoolId:
    """`<space>/<subnet>` or `<space>/<subnet>/<sub_pool>`; also the pool's geometry."""

    space: str
    subnet: Network
    sub_pool: Network | None = None

    def __str__(self) -> str:
        base = f"{self.space}/{self.subnet}"
        return f"{base}/{self.sub_pool}" if self.sub_pool is not None else base

    @property
    def v6(self) -> bool:
        return self.subnet.version == 6

    @property
    def size(self) -> int:
        """Bits of the pool's sequence: its addresses, capped at 2**64."""
        return min(self.subnet.num_addresses, MAX_ORDINALS)

    @property
    def reserved(self) -> tuple[int, ...]:
        """Ordinals never handed out: the network address, and the IPv4 broadcast."""
        if self.subnet.version == 4:
            return (0, self.size - 1)
        return (0,)

    @property
    def dynamic_range(self) -> tuple[int, int]:
        """[lo, hi] ordinals that dynamic allocation draws from."""
        if self.sub_pool is None:
            return 0, self.size - 1
        lo = int(self.sub_pool.network_address) - int(self.subnet.network_address)
        return lo, min(lo + self.sub_pool.num_addresses, self.size) - 1

    @property
    def dynamic_capacity(self) -> int:
        """Addresses the dynamic range could ever hand out (reserved ones excluded)."""
        lo, hi = self.dynamic_range
        return hi - lo + 1 - sum(1 for r in self.reserved if lo <= r <= hi)

    def ordinal_of(self, address: Address) -> int:
        """The bit of `address`; InvalidArgument when it is not an allocatable address."""
        net = self.subnet
        if address.version != net.version or address not in net:
            raise InvalidArgument(f"address {address} is outside pool {str(self)!r}")
        ordinal = int(address) - int(net.network_address)
        if ordinal >= self.size:
            raise InvalidArgument(
                f"address {address} lies beyond the first 2**64 addresses of pool "
                f"{str(self)!r}, the part cnm allocates from"
            )
        if ordinal == 0:
            raise InvalidArgument(f"address {address} is the network address of pool {str(self)!r}")
        if ordinal in self.reserved:
            raise InvalidArgument(
                f"address {address} is the broadcast address of pool {str(self)!r}"
            )
        return ordinal

    def address_of(self, ordinal: int) -> Address:
        return self.subnet.network_address + ordinal

    def cidr_of(self, ordinal: int) -> str:
        """The address in CIDR form with the pool's prefix length ("172.17.0.2/16")."""
        return f"{self.address_of(ordinal)}/{self.subnet.prefixlen}"

    def check_address_arg(self, what: str, text: str) -> int:
        """Parse `text` (address, or CIDR with this pool's prefix length) to an ordinal."""
        address, prefixlen = parse_address(what, text)
        if prefixlen is not None and prefixlen != self.subnet.prefixlen:
            raise InvalidArgument(
                f"invalid {what} {shown(text)}: prefix length /{prefixlen} differs from pool "
                f"{str(self)!r}"
            )
        return self.ordinal_of(address)


def _check_geometry(subnet: Network, sub_pool: Network | None) -> None:
    if subnet.prefixlen == 0:
        raise InvalidArgument(f"pool {subnet} covers every address: give a smaller subnet")
    # A pool needs at least one address that is neither network nor broadcast.
    if subnet.version == 4 and subnet.prefixlen > 30:
        raise InvalidArgument(
            f"pool {subnet} is too small: IPv4 pools need a prefix of /30 or shorter"
        )
    if subnet.version == 6 and subnet.prefixlen > 127:
        raise InvalidArgument(
            f"pool {subnet} is too small: IPv6 pools need a prefix of /127 or shorter"
        )
    if sub_pool is None:
        return
    if sub_pool.version != subnet.version or not sub_pool.subnet_of(subnet):  # type: ignore[arg-type]
        raise InvalidArgument(f"sub-pool {sub_pool} is not inside pool {subnet}")
    if int(sub_pool.network_address) - int(subnet.network_address) >= MAX_ORDINALS:
        raise InvalidArgument(
            f"sub-pool {sub_pool} lies beyond the first 2**64 addresses of pool {subnet}"
        )
    pid = PoolId("x", subnet, sub_pool)
    if pid.dynamic_capacity <= 0:
        raise InvalidArgument(f"sub-pool {sub_pool} holds no allocatable address of pool {subnet}")


@lru_cache(maxsize=4096)
def parse_pool_id(text: str) -> PoolId:
    """Parse and validate a pool id; the hot path, hence cached (ids are immutable values)."""
    parts = text.split("/")
    if len(parts) not in (3, 5) or not text:
        raise InvalidArgument(
            f"invalid pool id {shown(text)}: expected <space>/<subnet> or <space>/<subnet>/<sub_pool>",
            reason="INVALID_POOL_ID",
        )
    try:
        space = validate_space(parts[0])
        subnet = cidr.network("/".join(parts[1:3]), what="subnet")
        sub_pool = cidr.network("/".join(parts[3:5]), what="sub-pool") if len(parts) == 5 else None
        _check_geometry(subnet, sub_pool)
    except InvalidArgument as e:
        raise InvalidArgument(
            f"invalid pool id {shown(text)}: {e}", reason="INVALID_POOL_ID"
        ) from None
    return PoolId(space, subnet, sub_pool)


# --- requests and results -----------------------------------------------------------------


@dataclass(frozen=True)
class PoolRequest:
    space: str
    subnet: Network | None
    sub_pool: Network | None
    v6: bool
    owner: str
    # (name, address) pairs to reserve at creation, sorted by name.
    aux: tuple[tuple[str, Address], ...]
    request_id: str
    # Fingerprint of the whole request: a retry must match the first call.
    fingerprint: str


@dataclass(frozen=True)
class PoolGrant:
    pool_id: PoolId
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolInfo:
    pool_id: PoolId
    owner: str
    used: int
    free: int


@dataclass(frozen=True)
class AddressRequest:
    pool_id: PoolId
    # The preferred ordinal, or None for the next free one.
    ordinal: int | None
    owner: str


@dataclass(frozen=True)
class Allocation:
    address: Address
    owner: str


def _check_owner(owner: str) -> str:
    if len(owner) > _MAX_OWNER:
        raise InvalidArgument(f"owner is longer than {_MAX_OWNER} characters: {owner[:40]!r}...")
    return owner


def _check_request_id(request_id: str) -> str:
    if request_id and not _REQUEST_ID.match(request_id):
        raise InvalidArgument(
            f"invalid request_id {shown(request_id)}: use 1-128 characters of [A-Za-z0-9_.:-]"
        )
    return request_id


def _own_options(options: Mapping[str, str], allowed_prefixes: tuple[str, ...]) -> None:
    for key in options:
        if not key:
            raise InvalidArgument("invalid option: empty key")
        if key.startswith(OWN_OPTION_PREFIX) and not key.startswith(allowed_prefixes):
            raise InvalidArgument(f"unknown option {shown(key)}")


def pool_request(
    *,
    space: str,
    pool: str,
    sub_pool: str,
    options: Mapping[str, str],
    v6: bool,
    owner: str,
    request_id: str,
) -> PoolRequest:
    """Validate a RequestPool call completely before anything touches Redis."""
    validate_space(space)
    _check_owner(owner)
    _check_request_id(request_id)
    _own_options(options, (AUX_ADDRESS_PREFIX,))
    subnet = cidr.network(pool, what="pool") if pool else None
    sub = cidr.network(sub_pool, what="sub_pool") if sub_pool else None
    if subnet is None and sub is not None:
        raise InvalidArgument(f"sub_pool {shown(sub_pool)} needs a pool to be inside of")
    if subnet is not None:
        if v6 and subnet.version == 4:
            raise InvalidArgument(f"v6 is set but pool {shown(pool)} is IPv4")
        _check_geometry(subnet, sub)
    aux: list[tuple[str, Address]] = []
    for key in sorted(k for k in options if k.startswith(AUX_ADDRESS_PREFIX)):
        name, value = key[len(AUX_ADDRESS_PREFIX) :], options[key]
        if not _AUX_NAME.match(name):
            raise InvalidArgument(
                f"invalid option {shown(key)}: aux address name {shown(name)} is invalid"
            )
        if subnet is None:
            raise InvalidArgument(f"option {shown(key)} needs an explicit pool")
        address, prefixlen = parse_address(f"aux address {name!r}", value)
        if prefixlen is not None:
            raise InvalidArgument(
                f"invalid option {shown(key)}: give an address without prefix, not {shown(value)}"
            )
        PoolId(space, subnet, sub).ordinal_of(address)
        if any(address == a for _, a in aux):
            raise InvalidArgument(f"option {shown(key)}: aux address {address} is given twice")
        aux.append((name, address))
    fingerprint = hashlib.sha256(
        json.dumps(
            [space, pool, sub_pool, bool(v6), owner, sorted(options.items())], separators=(",", ":")
        ).encode()
    ).hexdigest()
    return PoolRequest(
        space=space,
        subnet=subnet,
        sub_pool=sub,
        v6=bool(v6) or (subnet is not None and subnet.version == 6),
        owner=owner,
        aux=tuple(aux),
        request_id=request_id,
        fingerprint=fingerprint,
    )


def address_request(
    *, pool_id: str, address: str, options: Mapping[str, str], owner: str
) -> AddressRequest:
    """Validate a RequestAddress call; the gateway request gets owner "gateway" by default."""
    pid = parse_pool_id(pool_id)
    _check_owner(owner)
    _own_options(options, ())
    kind = options.get(REQUEST_ADDRESS_TYPE)
    if kind is not None and kind != GATEWAY_REQUEST_TYPE:
        raise InvalidArgument(
            f"invalid option {REQUEST_ADDRESS_TYPE}={shown(kind)}: only {shown(GATEWAY_REQUEST_TYPE)} is known"
        )
    if kind is not None and not owner:
        owner = GATEWAY_OWNER
    ordinal = pid.check_address_arg("address", address) if address else None
    return AddressRequest(pid, ordinal, owner)


def saturate_u64(n: int) -> int:
    return min(n, MAX_U64)
