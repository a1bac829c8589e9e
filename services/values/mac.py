"""A MAC address (`--mac-address`): one format and one rule for every layer.

Accepted as 'xx:xx:xx:xx:xx:xx' in either case, or with '-' separators (what
Go's net.ParseMAC, so Docker, also takes); returned lower case with ':'. An
interface's own address must be unicast and not all zero: the kernel refuses
those with a bare EINVAL.
"""

from __future__ import annotations

import re

from services.errors import InvalidArgument
from services.limits import shown

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def parse(
    value: object, *, unicast: bool = True, what: str = "MAC address", field: str = ""
) -> str:
    """`value` normalised, or InvalidArgument (INVALID_MAC_ADDRESS) naming `what`."""
    norm = value.strip().lower().replace("-", ":") if isinstance(value, str) else ""
    why = ""
    if not _MAC.fullmatch(norm):
        why = "expected six hex octets like 02:42:ac:11:00:02"
    elif unicast and int(norm[:2], 16) & 1:
        why = "is a multicast address"
    elif unicast and norm == "00:00:00:00:00:00":
        why = "is all zero"
    if why:
        raise InvalidArgument(
            f"invalid {what} {shown(value)}: {why}", reason="INVALID_MAC_ADDRESS", field=field
        )
    return norm


def mac_address(value: str) -> str:
    """An endpoint's requested MAC (the API field mac_address), normalised."""
    return parse(value, what="mac_address", field="mac_address")
