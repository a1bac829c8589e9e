"""A sandbox's name resolution settings: resolv.conf (`--dns`, `--dns-search`,
`--dns-option`) and the extra /etc/hosts lines (`--add-host NAME:IP`).

Both end up as lines of files inside the container, so validation also keeps
out anything that could break a line (whitespace, '#', a newline).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from services.errors import InvalidArgument
from services.limits import shown

NAME_MAX = 253  # characters of a DNS name (RFC 1035)
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# resolv.conf `options` entries: "ndots:2", "timeout:1", "rotate", "edns0".
_OPTION = re.compile(r"[A-Za-z0-9_:.-]{1,64}")


@dataclass(frozen=True)
class DnsConfig:
    servers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExtraHost:
    hostname: str
    address: str


def is_hostname(text: str) -> bool:
    """RFC 1123 host name: dot-separated labels of letters, digits and '-'."""
    if not text or len(text) > NAME_MAX:
        return False
    return all(_LABEL.fullmatch(label) for label in text.rstrip(".").split("."))


def _bad(what: str, value: object, why: str) -> InvalidArgument:
    reason = "INVALID_" + re.sub(r"[^A-Z0-9]+", "_", what.upper()).strip("_")
    return InvalidArgument(f"invalid {what} {shown(value)}: {why}", reason=reason)


def _address(what: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise _bad(what, text, "not an IP address (give it without a prefix length)") from None


def validate_dns(dns: DnsConfig) -> DnsConfig:
    """Servers in canonical form, or InvalidArgument naming the bad entry.
    Reasons: INVALID_DNS_SERVER, INVALID_DNS_SEARCH_DOMAIN, INVALID_DNS_OPTION."""
    servers = tuple(_address("DNS server", s) for s in dns.servers)
    for domain in dns.search:
        if not is_hostname(domain):
            raise _bad("DNS search domain", domain, "not an RFC 1123 domain name")
    for option in dns.options:
        if not _OPTION.fullmatch(option):
            raise _bad("DNS option", option, "expected something like ndots:2")
    return DnsConfig(servers=servers, search=tuple(dns.search), options=tuple(dns.options))


def validate_extra_host(h: ExtraHost) -> ExtraHost:
    """The address in canonical form, or InvalidArgument naming the bad part.
    Reasons: INVALID_EXTRA_HOST_NAME, INVALID_EXTRA_HOST_ADDRESS."""
    if not is_hostname(h.hostname):
        raise _bad("extra host name", h.hostname, "not an RFC 1123 host name")
    return ExtraHost(hostname=h.hostname, address=_address("extra host address", h.address))
