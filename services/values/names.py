"""The names a container is known by: its hostname and domain name
(`--hostname`, `--domainname`) and its network aliases (`--network-alias`).

What Docker 20.10 accepts, and so cnm: none of the three is held to RFC 1123.
Docker 1.11 refused a hostname with '_' and 1.13 dropped that check again
(moby#28988: the runtime is the arbiter); runc passes the hostname and domain
name to sethostname/setdomainname, which take any 1-64 bytes. Aliases are not
checked by dockerd at all. cnm writes all three into /etc/hosts and serves
them from its DNS, so it keeps what a DNS name can carry and a hosts line
cannot break: dot-separated labels of 1-63 letters, digits, '_' and '-' (not
at either end of a label), '_' anywhere; the kernel's 64 bytes for the
hostname and the domain name, 253 for an alias (a DNS name).
"""

from __future__ import annotations

import re

from services.errors import InvalidArgument
from services.limits import shown

UTS_NAME_MAX = 64  # bytes of a hostname or domain name (the kernel's __NEW_UTS_LEN)
DNS_NAME_MAX = 253  # characters of a DNS name (RFC 1035)

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


def _name(what: str, value: str, limit: int, reason: str, field: str) -> str:
    """`value` as it is, or InvalidArgument naming `what` and the value as given."""
    if not isinstance(value, str) or not value or len(value) > limit:
        why = f"expected 1-{limit} characters"
    elif not _NAME.fullmatch(value):
        why = "use dot-separated labels of letters, digits, '_' and '-' (no '-' first or last)"
    else:
        return value
    raise InvalidArgument(f"invalid {what} {shown(value)}: {why}", reason=reason, field=field)


def hostname(value: str) -> str:
    """A container's hostname ("web", "web_1.example"), or InvalidArgument
    (reason INVALID_HOSTNAME) naming it."""
    return _name("hostname", value, UTS_NAME_MAX, "INVALID_HOSTNAME", "hostname")


def domainname(value: str) -> str:
    """A container's domain name, or InvalidArgument (INVALID_DOMAINNAME)."""
    return _name("domainname", value, UTS_NAME_MAX, "INVALID_DOMAINNAME", "domainname")


def alias(value: str) -> str:
    """A network alias (a name peers resolve), or InvalidArgument (INVALID_ALIAS)."""
    return _name("alias", value, DNS_NAME_MAX, "INVALID_ALIAS", "aliases")
