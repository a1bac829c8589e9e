"""cnm's nftables layout, and the JSON commands that fill it.

Two tables belong to cnm and nothing else is ever touched:

``table inet cnm`` (IPv4 and IPv6)
    sets, keyed by network / bridge, never by container:
      bridges         ifname            every cnm bridge
      internal        ifname            bridges of internal networks
      bridge_pairs    ifname . ifname   "br" . "br" for each bridge (same-bridge traffic)
      bridge_nets_v4/_v6  ifname . addr (interval)  "br" . subnet for each subnet of a bridge
      masq_v4/_v6     addr (interval)   subnets of non-internal networks with masquerade on
    maps, ONE element per published port:
      ports_v4        ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
      ports_v4_any    inet_proto . inet_service : ipv4_addr . inet_service  (host ip 0.0.0.0)
      ports_v6, ports_v6_any                                                 (host ip ::)
    chains:
      guard        filter prerouting, raw:  drop 127.0.0.0/8 destinations not arriving on lo
      forward      filter forward:          isolation, internal networks, no unsolicited inbound
      port_dnat    (regular):               the four map lookups
      prerouting   nat prerouting, dstnat:  local destinations -> port_dnat (from outside)
      output       nat output, -100:        local destinations -> port_dnat (from the host)
      postrouting  nat postrouting, srcnat: loopback + hairpin + subnet masquerade

``table bridge cnm``
      icc_off_ports  ifname             bridge ports of networks with ICC off
      forward        filter forward:    non-ARP frames from those ports are dropped

ICC lives in the bridge family because frames between two ports of one bridge
only reach the inet forward hook when br_netfilter is loaded and
bridge-nf-call-iptables is on; the bridge forward hook sees them always. (This
kernel lacks NFT_BRIDGE_META, so `meta ibrname` is unavailable and the ports
themselves are the key.)

How a sync is built: the table skeleton (sets, maps, chains, no rules) is a
constant in nft's own syntax, because nft 1.0.6's JSON parser cannot declare
a map whose data is a concatenation (it rejects ``"ipv4_addr . inet_service"``
and crashes on the array form). A skeleton without rules is inert (empty
chains with policy accept) so creating it changes no packet's fate. Rules and
elements then go in as ONE JSON transaction. No user value is ever formatted
into nft syntax: elements are JSON values built from validated, typed data.

What the bridge driver must do besides calling the firewall: register every
sandbox's bridge port with `Firewall.attach_port` (ports of ICC-off networks
are the only per-container elements), and turn hairpin mode on for bridge
ports (IFLA_BRPORT_MODE, as Docker does without its userland proxy). With
br_netfilter active, a sandbox connecting to its OWN published port through a
host address is DNATed and re-bridged out of the port it came in on, which a
bridge refuses unless that port is in hairpin mode; without br_netfilter the
packet is routed and hairpin mode is not needed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, TypeVar

from .model import BridgeNetwork, IPNetwork, PortMapping

TABLE = "cnm"
INET = "inet"
BRIDGE = "bridge"
TABLES = ((INET, TABLE), (BRIDGE, TABLE))

S_BRIDGES = "bridges"
S_INTERNAL = "internal"
S_PAIRS = "bridge_pairs"
S_MASQ4 = "masq_v4"
S_MASQ6 = "masq_v6"
S_NETS4 = "bridge_nets_v4"
S_NETS6 = "bridge_nets_v6"
S_ICC_OFF = "icc_off_ports"
M_PORTS4 = "ports_v4"
M_PORTS4_ANY = "ports_v4_any"
M_PORTS6 = "ports_v6"
M_PORTS6_ANY = "ports_v6_any"

C_GUARD = "guard"
C_FORWARD = "forward"
C_PORT_DNAT = "port_dnat"
C_PREROUTING = "prerouting"
C_OUTPUT = "output"
C_POSTROUTING = "postrouting"

INET_CHAINS = (C_GUARD, C_FORWARD, C_PORT_DNAT, C_PREROUTING, C_OUTPUT, C_POSTROUTING)
BRIDGE_CHAINS = (C_FORWARD,)
INET_SETS = (S_BRIDGES, S_INTERNAL, S_PAIRS, S_NETS4, S_NETS6, S_MASQ4, S_MASQ6)
INET_MAPS = (M_PORTS4, M_PORTS4_ANY, M_PORTS6, M_PORTS6_ANY)
BRIDGE_SETS = (S_ICC_OFF,)

_OWNER = "managed by cnm; edits are reverted"

# Constant: no value in here comes from a caller.
SKELETON = f"""
table inet {TABLE} {{
    comment "{_OWNER}"
    set {S_BRIDGES} {{ type ifname; }}
    set {S_INTERNAL} {{ type ifname; }}
    set {S_PAIRS} {{ type ifname . ifname; }}
    set {S_NETS4} {{ type ifname . ipv4_addr; flags interval; }}
    set {S_NETS6} {{ type ifname . ipv6_addr; flags interval; }}
    set {S_MASQ4} {{ type ipv4_addr; flags interval; }}
    set {S_MASQ6} {{ type ipv6_addr; flags interval; }}
    map {M_PORTS4} {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
    map {M_PORTS4_ANY} {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
    map {M_PORTS6} {{ type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }}
    map {M_PORTS6_ANY} {{ type inet_proto . inet_service : ipv6_addr . inet_service; }}
    chain {C_GUARD} {{ type filter hook prerouting priority raw; policy accept; }}
    chain {C_FORWARD} {{ type filter hook forward priority filter; policy accept; }}
    chain {C_PORT_DNAT} {{ }}
    chain {C_PREROUTING} {{ type nat hook prerouting priority dstnat; policy accept; }}
    chain {C_OUTPUT} {{ type nat hook output priority -100; policy accept; }}
    chain {C_POSTROUTING} {{ type nat hook postrouting priority srcnat; policy accept; }}
}}
table bridge {TABLE} {{
    comment "{_OWNER}"
    set {S_ICC_OFF} {{ type ifname; }}
    chain {C_FORWARD} {{ type filter hook forward priority filter; policy accept; }}
}}
"""

# One transaction: a missing table is created first so that delete never fails.
DELETE_TABLES = f"""
add table inet {TABLE}
delete table inet {TABLE}
add table bridge {TABLE}
delete table bridge {TABLE}
"""

RECREATE_SKELETON = DELETE_TABLES + SKELETON

Json = dict[str, Any]


# --- expression helpers ------------------------------------------------------------------


def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _payload(proto: str, fld: str) -> Json:
    return {"payload": {"protocol": proto, "field": fld}}


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _prefix(addr: str, length: int) -> Json:
    return {"prefix": {"addr": addr, "len": length}}


def _pair() -> Json:
    return {"concat": [_meta("iifname"), _meta("oifname")]}


_ACCEPT: Json = {"accept": None}
_DROP: Json = {"drop": None}
_RETURN: Json = {"return": None}
_MASQ: Json = {"masquerade": None}


def _dnat(family: str, addr_field: Json | None, proto_port: list[Json], mapname: str) -> Json:
    key = [addr_field, *proto_port] if addr_field else proto_port
    return {
        "dnat": {"family": family, "addr": {"map": {"key": {"concat": key}, "data": f"@{mapname}"}}}
    }


_L4 = [_meta("l4proto"), _payload("th", "dport")]
_CT_DNAT = _match({"ct": {"key": "status"}}, "dnat", "in")
_LOCAL_DST = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")

# chain -> list of rule expressions, in order. The comments say why each exists.
INET_RULES: dict[str, list[list[Json]]] = {
    C_GUARD: [
        # 127/8 never legitimately arrives from a wire. Without this, route_localnet=1
        # on the bridges would let sandboxes reach the host's loopback services, and
        # DNAT of 127.0.0.1-published ports would serve peers on the segment.
        [
            _match(_meta("iifname"), "lo", "!="),
            _match(_payload("ip", "daddr"), _prefix("127.0.0.0", 8)),
            _DROP,
        ],
    ],
    C_FORWARD: [
        [_match({"ct": {"key": "state"}}, ["established", "related"], "in"), _ACCEPT],
        # Within one bridge (seen here only with br_netfilter); ICC is the bridge table's job.
        [_match(_pair(), f"@{S_PAIRS}"), _ACCEPT],
        [_match(_meta("iifname"), f"@{S_INTERNAL}"), _DROP],
        [_match(_meta("oifname"), f"@{S_INTERNAL}"), _DROP],
        # Published ports are meant to be reached from anywhere, other bridges included.
        [_CT_DNAT, _ACCEPT],
        # Isolation: bridge to a different bridge (same-bridge was accepted above).
        [
            _match(_meta("iifname"), f"@{S_BRIDGES}"),
            _match(_meta("oifname"), f"@{S_BRIDGES}"),
            _DROP,
        ],
        # No unsolicited routed access to sandboxes from outside; publish a port instead.
        [_match(_meta("oifname"), f"@{S_BRIDGES}"), _DROP],
    ],
    C_PORT_DNAT: [
        [_dnat("ip", _payload("ip", "daddr"), _L4, M_PORTS4)],
        [_dnat("ip", None, _L4, M_PORTS4_ANY)],
        [_dnat("ip6", _payload("ip6", "daddr"), _L4, M_PORTS6)],
        [_dnat("ip6", None, _L4, M_PORTS6_ANY)],
    ],
    C_PREROUTING: [[_LOCAL_DST, {"jump": {"target": C_PORT_DNAT}}]],
    C_OUTPUT: [[_LOCAL_DST, {"jump": {"target": C_PORT_DNAT}}]],
    C_POSTROUTING: [
        # The host reaching a port published on 127.0.0.1: the sandbox cannot answer 127.0.0.1.
        [
            _match(_payload("ip", "saddr"), _prefix("127.0.0.0", 8)),
            _match(_meta("oifname"), f"@{S_BRIDGES}"),
            _MASQ,
        ],
        # Hairpin: a sandbox reaching a published port on its own bridge via a host
        # address. Keyed on (out bridge, source subnet), not on the in-interface: with
        # br_netfilter the DNATed packet is re-bridged and postrouting sees no iif.
        [
            _CT_DNAT,
            _match({"concat": [_meta("oifname"), _payload("ip", "saddr")]}, f"@{S_NETS4}"),
            _MASQ,
        ],
        [
            _CT_DNAT,
            _match({"concat": [_meta("oifname"), _payload("ip6", "saddr")]}, f"@{S_NETS6}"),
            _MASQ,
        ],
        # Anything else entering a bridge keeps its source: the client address is preserved.
        [_match(_meta("oifname"), f"@{S_BRIDGES}"), _RETURN],
        [_match(_payload("ip", "saddr"), f"@{S_MASQ4}"), _MASQ],
        [_match(_payload("ip6", "saddr"), f"@{S_MASQ6}"), _MASQ],
    ],
}

BRIDGE_RULES: dict[str, list[list[Json]]] = {
    C_FORWARD: [
        # ARP stays: ICC off forbids traffic, not neighbour resolution.
        [
            _match(_meta("iifname"), f"@{S_ICC_OFF}"),
            _match(_payload("ether", "type"), "arp", "!="),
            _DROP,
        ],
    ],
}


# --- commands ----------------------------------------------------------------------------


def _obj(family: str, **fields: Any) -> Json:
    return {"family": family, "table": TABLE, **fields}


def add_elements(family: str, name: str, elems: list[Any]) -> list[Json]:
    if not elems:
        return []
    return [{"add": {"element": _obj(family, name=name, elem=elems)}}]


def delete_elements(family: str, name: str, elems: list[Any]) -> list[Json]:
    if not elems:
        return []
    return [{"delete": {"element": _obj(family, name=name, elem=elems)}}]


def _flush_set(family: str, name: str, kind: str = "set") -> Json:
    return {"flush": {kind: _obj(family, name=name)}}


def rules_commands() -> list[Json]:
    """Flush every cnm chain and re-add its rules (for a full sync)."""
    cmds: list[Json] = []
    for family, rules in ((INET, INET_RULES), (BRIDGE, BRIDGE_RULES)):
        for chain, exprs in rules.items():
            cmds.append({"flush": {"chain": _obj(family, name=chain)}})
            cmds.extend({"add": {"rule": _obj(family, chain=chain, expr=e)}} for e in exprs)
    return cmds


# --- elements from the desired state -------------------------------------------------------


def network_elements(
    networks: Iterable[BridgeNetwork], icc_off_ports: Iterable[str]
) -> dict[tuple[str, str], list[Any]]:
    """(family, set) -> elements, for every set keyed by network or bridge port."""
    nets = sorted(networks, key=lambda n: n.bridge)
    masq4 = [s for n in nets if n.masquerades for s in n.subnets if s.version == 4]
    masq6 = [s for n in nets if n.masquerades for s in n.subnets if s.version == 6]
    return {
        (INET, S_BRIDGES): [n.bridge for n in nets],
        (INET, S_INTERNAL): [n.bridge for n in nets if n.internal],
        (INET, S_PAIRS): [{"concat": [n.bridge, n.bridge]} for n in nets],
        (INET, S_NETS4): [
            _bridge_net(n.bridge, s) for n in nets for s in n.subnets if s.version == 4
        ],
        (INET, S_NETS6): [
            _bridge_net(n.bridge, s) for n in nets for s in n.subnets if s.version == 6
        ],
        (INET, S_MASQ4): [_prefix(str(s.network_address), s.prefixlen) for s in _collapse(masq4)],
        (INET, S_MASQ6): [_prefix(str(s.network_address), s.prefixlen) for s in _collapse(masq6)],
        (BRIDGE, S_ICC_OFF): sorted(icc_off_ports),
    }


def _bridge_net(bridge: str, net: IPNetwork) -> Json:
    return {"concat": [bridge, _prefix(str(net.network_address), net.prefixlen)]}


_Net = TypeVar("_Net", ipaddress.IPv4Network, ipaddress.IPv6Network)


def _collapse(nets: list[_Net]) -> list[_Net]:
    # Interval sets refuse overlapping elements; two networks may share a range.
    return list(ipaddress.collapse_addresses(nets)) if nets else []


def network_sets_commands(elements: dict[tuple[str, str], list[Any]]) -> list[Json]:
    """Replace the content of every network-keyed set (flush + add in the same batch)."""
    cmds: list[Json] = []
    for (family, name), elems in elements.items():
        cmds.append(_flush_set(family, name))
        cmds.extend(add_elements(family, name, elems))
    return cmds


def mapping_map(m: PortMapping) -> str:
    if m.version == 4:
        return M_PORTS4_ANY if m.all_addresses else M_PORTS4
    return M_PORTS6_ANY if m.all_addresses else M_PORTS6


def mapping_element(m: PortMapping) -> list[Any]:
    key: list[Any] = [m.protocol, m.host_port]
    if not m.all_addresses:
        key.insert(0, str(m.host_ip))
    return [{"concat": key}, {"concat": [str(m.container_ip), m.container_port]}]


def mapping_key_element(m: PortMapping) -> Any:
    """The key alone, which is what deleting a map element takes."""
    key: list[Any] = [m.protocol, m.host_port]
    if not m.all_addresses:
        key.insert(0, str(m.host_ip))
    return {"concat": key}


def mapping_elements(mappings: Iterable[PortMapping]) -> dict[str, list[Any]]:
    """map name -> elements, for the four port maps."""
    by_map: dict[str, list[Any]] = {name: [] for name in INET_MAPS}
    for m in mappings:
        by_map[mapping_map(m)].append(mapping_element(m))
    return by_map


def mappings_commands(mappings: Iterable[PortMapping]) -> list[Json]:
    """Replace the content of the four port maps (flush + add in the same batch)."""
    cmds: list[Json] = []
    for name, elems in mapping_elements(mappings).items():
        cmds.append(_flush_set(INET, name, "map"))
        cmds.extend(add_elements(INET, name, elems))
    return cmds
