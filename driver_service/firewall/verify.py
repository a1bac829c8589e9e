"""Does the kernel hold what the firewall wants? Compare nft's JSON listing with the desired state.

A listing is split in two:

- the *structure*: tables, chains, rules and set declarations, with handles
  and elements removed. It never changes between full syncs, so the firewall
  keeps the structure the kernel reported right after its last full sync and
  compares against that (no hand-written copy of nft's rendering to drift).
- the *elements* of every set and map, in a canonical form, compared with the
  elements computed from the desired state.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from . import ruleset
from .model import IPNetwork

Json = dict[str, Any]
Elements = dict[tuple[str, str], frozenset[Any]]

_INTERVAL_SETS = {(ruleset.INET, ruleset.S_MASQ4), (ruleset.INET, ruleset.S_MASQ6)}
_BRIDGE_NET_SETS = {(ruleset.INET, ruleset.S_NETS4), (ruleset.INET, ruleset.S_NETS6)}


def split_listing(listings: Iterable[list[Json]]) -> tuple[str, Elements]:
    """(structure as canonical JSON text, canonical elements per (family, set))."""
    structure: list[Json] = []
    elements: Elements = {}
    for objects in listings:
        for obj in objects:
            if "metainfo" in obj:
                continue
            ((kind, body),) = obj.items()
            body = {k: v for k, v in body.items() if k != "handle"}
            if kind in ("set", "map"):
                key = (body["family"], body["name"])
                elements[key] = canonical(key, body.pop("elem", []))
            structure.append({kind: body})
    return json.dumps(structure, sort_keys=True), elements


def canonical(key: tuple[str, str], elems: list[Any]) -> frozenset[Any]:
    """Elements in a form that does not depend on how nft chose to print them."""
    if key in _INTERVAL_SETS:
        nets: list[IPNetwork] = []
        for e in elems:
            nets.extend(_interval(e))
        # collapse_addresses takes one family at a time.
        v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
        v6 = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
        return frozenset([*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)])
    if key in _BRIDGE_NET_SETS:
        return frozenset((e["concat"][0], net) for e in elems for net in _interval(e["concat"][1]))
    return frozenset(json.dumps(e, sort_keys=True) for e in elems)


def _interval(e: Any) -> list[IPNetwork]:
    # nft prints a /32 or /128 as a bare address and a non-prefix interval as a range.
    if isinstance(e, str):
        return [ipaddress.ip_network(e)]
    if "prefix" in e:
        return [ipaddress.ip_network(f"{e['prefix']['addr']}/{e['prefix']['len']}")]
    if "range" in e:
        lo, hi = (ipaddress.ip_address(a) for a in e["range"])
        return list(ipaddress.summarize_address_range(lo, hi))
    raise ValueError(f"unexpected interval element {e!r}")


def expected_elements(
    sets: dict[tuple[str, str], list[Any]], mappings: dict[str, list[Any]]
) -> Elements:
    """Canonical elements of every cnm set and map for the desired state."""
    out: Elements = {key: canonical(key, elems) for key, elems in sets.items()}
    for name, elems in mappings.items():
        out[(ruleset.INET, name)] = canonical((ruleset.INET, name), elems)
    return out
