"""A network in CIDR form (`--subnet`, `--ip-range`, an IPAM pool, a route
destination): one parser and one wording for every service.

As Docker: the prefix length is required ("10.1.0.0" is not a subnet) and no
host bits may be set ("10.1.0.1/16" is refused, with the network it probably
meant). Returned as an ipaddress network object.
"""

from __future__ import annotations

import ipaddress

from services.errors import InvalidArgument
from services.limits import shown

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CIDR_MAX = 64  # characters: the longest IPv6 CIDR is 43


def network(value: object, *, what: str = "subnet", field: str = "", reason: str = "") -> IPNetwork:
    """`value` as a network, or InvalidArgument naming `what` and the value as
    given (with `reason` and the BadRequest `field` when the caller names them)."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return value
    text = value if isinstance(value, str) else ""
    why = ""
    net: IPNetwork | None = None
    if not text or len(text) > CIDR_MAX:
        why = "not a CIDR such as 172.20.0.0/16"
    else:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            why = "not a CIDR such as 172.20.0.0/16"
    if net is not None:
        if "/" not in text:
            why = f"give a prefix length, e.g. {net}"
        elif ipaddress.ip_interface(text).ip != net.network_address:
            why = f"host bits are set (did you mean {net}?)"
        else:
            return net
    raise InvalidArgument(f"invalid {what} {shown(value)}: {why}", reason=reason, field=field)
