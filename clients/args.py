"""Parsing of cnmctl's flag values, docker's way; pure (no grpc, no I/O).

Each parser raises `ValueError` with a message naming the bad value; cnmctl
turns that into a usage error (exit 2) before anything is sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field


def key_value(text: str, *, what: str = "option", value_required: bool = True) -> tuple[str, str]:
    """("k", "v") from "k=v"; "k" alone is ("k", "") unless `value_required`."""
    key, sep, value = text.partition("=")
    if not key:
        raise ValueError(f"invalid {what} {text!r}: expected KEY=VALUE")
    if value_required and not sep:
        raise ValueError(f"invalid {what} {text!r}: expected KEY=VALUE")
    return key, value


def _ip(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise ValueError(f"invalid {what} {text!r}: not an IP address") from None


def ip_address(text: str) -> str:
    return _ip(text, "IP address")


def extra_host(text: str) -> tuple[str, str]:
    """("db", "10.0.0.5") from "db:10.0.0.5" or "db=10.0.0.5"; IPv6 as "db:::1" or "db=[::1]"."""
    # docker accepts "=" (newer) and ":" (classic); split on the first one,
    # as an IPv6 address contains ":" itself.
    sep = "=" if "=" in text else ":"
    name, found, address = text.partition(sep)
    if not found or not name or not address:
        raise ValueError(f"invalid extra host {text!r}: expected NAME:IP")
    return name, _ip(address, f"address in extra host {text!r}:")


@dataclass(frozen=True)
class SubnetConfig:
    """One IPAM config entry: a subnet with what belongs to it."""

    subnet: str
    ip_range: str = ""
    gateway: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)


def ipam_configs(
    subnets: Sequence[str],
    ip_ranges: Sequence[str] = (),
    gateways: Sequence[str] = (),
    aux_addresses: Sequence[tuple[str, str]] = (),
) -> list[SubnetConfig]:
    """Pair each --ip-range, --gateway and --aux-address with the --subnet containing it,
    as `docker network create` does (its createIPAMConfig)."""
    nets = []
    for text in subnets:
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"invalid subnet {text!r}") from None
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            if a.version == b.version and a.overlaps(b):
                raise ValueError(f"subnets {a} and {b} overlap")
    if not nets and (ip_ranges or gateways or aux_addresses):
        raise ValueError("every ip-range, gateway or aux-address needs a --subnet that contains it")
    ranges: dict[int, str] = {}
    for text in ip_ranges:
        try:
            rng = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"invalid ip-range {text!r}") from None
        idx = _containing(nets, rng, f"no matching subnet for range {text}")
        if idx in ranges:
            raise ValueError(
                f"cannot configure multiple ranges ({ranges[idx]}, {text}) on the same subnet "
                f"({subnets[idx]})"
            )
        ranges[idx] = text
    gws: dict[int, str] = {}
    for text in gateways:
        gw = ipaddress.ip_address(ip_address(text))
        idx = _containing(nets, gw, f"no matching subnet for gateway {text}")
        if idx in gws:
            raise ValueError(
                f"cannot configure multiple gateways ({gws[idx]}, {text}) for the same subnet "
                f"({subnets[idx]})"
            )
        gws[idx] = str(gw)
    aux: dict[int, dict[str, str]] = {}
    for name, text in aux_addresses:
        addr = ipaddress.ip_address(ip_address(text))
        idx = _containing(nets, addr, f"no matching subnet for aux-address {text}")
        aux.setdefault(idx, {})[name] = str(addr)
    return [
        SubnetConfig(
            subnet=subnets[i],
            ip_range=ranges.get(i, ""),
            gateway=gws.get(i, ""),
            aux_addresses=aux.get(i, {}),
        )
        for i in range(len(nets))
    ]


def _containing(
    nets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
    item: object,
    message: str,
) -> int:
    for i, net in enumerate(nets):
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            if item.version == net.version and item.subnet_of(net):  # type: ignore[arg-type]
                return i
        elif getattr(item, "version", 0) == net.version and item in net:
            return i
    raise ValueError(message)
