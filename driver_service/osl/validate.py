"""Validators for every value that reaches the kernel.

Each function takes what a caller passed (usually a string), returns it in a
normalised, typed form, or raises `InvalidArgument` naming the bad value. The
osl functions call them before they open a netlink socket, so bad input never
leaves partial kernel state behind. Drivers may call them earlier still, while
parsing their options.
"""

from __future__ import annotations

import ipaddress
import re

from services.errors import InvalidArgument
from services.limits import shown
from services.values import mac as mac_format

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IFNAMSIZ is 16 including the terminating NUL.
IFNAME_MAX = 15
MTU_MIN = 68
MTU_MAX = 65535
VNI_MAX = (1 << 24) - 1
# Namespace names become file names under /run/netns.
NETNS_NAME_MAX = 128

_SAFE = re.compile(r"[A-Za-z0-9_.-]+")
_SYSCTL_PART = re.compile(r"[A-Za-z0-9_.-]+")
_SYSCTL_VALUE = re.compile(r"[A-Za-z0-9_.:/ -]*")


def _safe_name(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"invalid {what} {shown(value)}: must be a non-empty string")
    if len(value) > limit:
        raise InvalidArgument(f"invalid {what} {shown(value)}: longer than {limit} characters")
    if not _SAFE.fullmatch(value) or value in (".", ".."):
        raise InvalidArgument(
            f"invalid {what} {shown(value)}: use only letters, digits, '_', '.' and '-'"
        )
    return value


def ifname(value: object, what: str = "interface name") -> str:
    """A Linux interface name: 1..15 characters of [A-Za-z0-9_.-], not '.' or '..'."""
    return _safe_name(value, what, IFNAME_MAX)


def netns_name(value: object) -> str:
    """A namespace name under /run/netns: 1..128 characters of [A-Za-z0-9_.-]."""
    return _safe_name(value, "network namespace name", NETNS_NAME_MAX)


def mac(value: object, *, unicast: bool = True) -> str:
    """A 48-bit MAC as 'xx:xx:xx:xx:xx:xx' (lower case; '-' separators accepted).

    With `unicast` (the default, for an interface's own address) multicast and
    all-zero addresses are rejected: the kernel refuses them with a bare EINVAL.
    """
    return mac_format.parse(value, unicast=unicast)


def mtu(value: object) -> int:
    """An MTU in 68..65535 (IPv4's minimum to the largest the kernel accepts)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"invalid MTU {shown(value)}: must be an integer")
    if not MTU_MIN <= value <= MTU_MAX:
        raise InvalidArgument(f"invalid MTU {value}: must be within {MTU_MIN}..{MTU_MAX}")
    return value


def ip_address(value: object, what: str = "IP address") -> IPAddress:
    """A single IPv4/IPv6 address (no prefix)."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(str(value))
    except ValueError as e:
        raise InvalidArgument(f"invalid {what} {shown(value)}: {e}") from e


def ip_interface(value: object, what: str = "interface address") -> IPInterface:
    """An address with its prefix length, e.g. '172.17.0.2/16' or 'fd00::2/64'.

    A prefix is required: a bare address would silently become a /32 or /128
    and the subnet route would be missing. Unspecified, multicast and loopback
    addresses are rejected.
    """
    if isinstance(value, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        iface = value
    else:
        text = str(value)
        if "/" not in text:
            raise InvalidArgument(f"invalid {what} {shown(value)}: a prefix length is required")
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError as e:
            raise InvalidArgument(f"invalid {what} {shown(value)}: {e}") from e
    ip = iface.ip
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback:
        raise InvalidArgument(f"invalid {what} {shown(value)}: not a usable unicast address")
    return iface


def vni(value: object) -> int:
    """A VXLAN network identifier, 1..16777215."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= VNI_MAX:
        raise InvalidArgument(f"invalid VXLAN VNI {shown(value)}: must be within 1..{VNI_MAX}")
    return value


def port(value: object, what: str = "port") -> int:
    """A UDP/TCP port, 1..65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidArgument(f"invalid {what} {shown(value)}: must be within 1..65535")
    return value


def sysctl_key(value: object) -> tuple[str, ...]:
    """A network sysctl as path components under /proc/sys.

    Accepts 'net.ipv4.ip_forward' or 'net/ipv6/conf/eth0.100/disable_ipv6' (the
    slash form is needed when an interface name contains a dot). Only keys
    under `net` are allowed: this layer configures networking, nothing else.
    """
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"invalid sysctl key {shown(value)}")
    parts = tuple(value.split("/") if "/" in value else value.split("."))
    if parts[0] != "net" or len(parts) < 2:
        raise InvalidArgument(f"invalid sysctl key {shown(value)}: only net.* keys may be set")
    for part in parts:
        if not _SYSCTL_PART.fullmatch(part) or part in (".", ".."):
            raise InvalidArgument(f"invalid sysctl key {shown(value)}: bad component {shown(part)}")
    return parts


def sysctl_value(value: object) -> str:
    """A sysctl value: an int, or a short string with no newline or shell-ish characters."""
    if isinstance(value, bool):
        value = int(value)
    text = str(value) if isinstance(value, int) else value
    if not isinstance(text, str) or len(text) > 256 or not _SYSCTL_VALUE.fullmatch(text):
        raise InvalidArgument(f"invalid sysctl value {shown(value)}")
    return text
