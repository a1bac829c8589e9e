"""The resolver's pure logic: scope, names, round robin, PTR, and the wire answers."""

from __future__ import annotations

import ipaddress

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from dns_service import wire
from dns_service.records import sandbox_names, to_ep
from dns_service.table import Ep, Kind, NameTable, Net, Sb, reverse_pointer
from dns_service.upstream import nameservers


def table() -> NameTable:
    t = NameTable()
    t.replace(
        [
            Net("n1", "front", subnets=("10.0.1.0/24", "fd00:1::/64")),
            Net("n2", "vault", internal=True, subnets=("10.0.2.0/24",)),
        ],
        [
            Sb("sa", "a", "h1", "/k/a"),
            Sb("sb", "b", "h2", "/k/b", servers=("10.9.9.9",)),
            Sb("sx", "x", "h1", "/k/x"),
        ],  # fmt: skip
        [
            Ep("ea", "n1", "sa", ("a",), "10.0.1.2"),
            Ep("eb", "n1", "sb", ("b", "API"), "10.0.1.3", "fd00:1::3"),
            Ep("ec", "n1", "sx", ("x", "api"), "10.0.1.4"),
            Ep("ex", "n2", "sx", ("x", "secret"), "10.0.2.4"),
        ],
    )
    return t


def test_names_aliases_and_name_network_in_scope():
    t = table()
    assert t.resolve("sa", "b", "A").values == ("10.0.1.3",)
    assert t.resolve("sa", "B.Front.", "A").values == ("10.0.1.3",)
    assert t.resolve("sa", "b", "AAAA").values == ("fd00:1::3",)
    r = t.resolve("sa", "a", "AAAA")
    assert r.kind is Kind.ANSWER and r.values == ()  # exists, no IPv6: NODATA
    # x is on both networks; a shares only front with it.
    assert t.resolve("sa", "x", "A").values == ("10.0.1.4",)
    assert t.resolve("sx", "x", "A").values in (("10.0.1.4", "10.0.2.4"), ("10.0.2.4", "10.0.1.4"))


def test_round_robin_rotates_all_holders_of_a_shared_alias():
    t = table()
    seen = [t.resolve("sa", "api", "A").values for _ in range(4)]
    assert all(sorted(v) == ["10.0.1.3", "10.0.1.4"] for v in seen)
    assert {v[0] for v in seen} == {"10.0.1.3", "10.0.1.4"}


def test_scope_nxdomain_forward_and_internal_servfail():
    t = table()
    assert t.resolve("sa", "secret", "A").kind is Kind.NXDOMAIN  # vault's name, not shared
    assert t.resolve("sa", "ghost.front", "A").kind is Kind.NXDOMAIN
    r = t.resolve("sb", "www.example.org", "A")
    assert r.kind is Kind.FORWARD and r.servers == ("10.9.9.9",)
    assert t.resolve("sa", "secret.vault", "A").kind is Kind.FORWARD  # outside a's scope
    t.drop_endpoint("ec")
    assert t.resolve("sx", "www.example.org", "A").kind is Kind.SERVFAIL  # only internal left
    assert t.resolve("unknown-sandbox", "b", "A").kind is Kind.FORWARD


def test_ptr_for_endpoint_addresses_and_nxdomain_inside_shared_subnets():
    t = table()
    assert t.resolve("sa", "3.1.0.10.in-addr.arpa", "PTR").values == ("b.front",)
    v6 = ipaddress.ip_address("fd00:1::3").reverse_pointer
    assert str(reverse_pointer(v6)) == "fd00:1::3"
    assert t.resolve("sa", v6, "PTR").values == ("b.front",)
    assert t.resolve("sa", "99.1.0.10.in-addr.arpa", "PTR").kind is Kind.NXDOMAIN
    assert t.resolve("sa", "4.2.0.10.in-addr.arpa", "PTR").kind is Kind.FORWARD
    assert reverse_pointer("not.a.reverse.name") is None


def test_updates_drop_names_and_networks():
    t = table()
    t.put_endpoint(Ep("eb", "n1", "sb", ("b",), "10.0.1.3"))  # alias API gone
    assert t.resolve("sa", "api", "A").values == ("10.0.1.4",)
    t.drop_network("n1")
    assert t.resolve("sa", "b", "A").kind is Kind.FORWARD  # a shares no network any more
    assert [s.id for s in t.sandboxes_on("h1")] == ["sa", "sx"]


def test_wire_answers_nxdomain_servfail_and_truncation():
    q = wire.parse(DNSRecord.question("b", "A").pack())
    assert q is not None and q.type == "A" and q.udp_limit == wire.UDP_LIMIT
    reply = DNSRecord.parse(wire.answer(q, table().resolve("sa", "b", "A"), 600, 512))
    assert [str(rr.rdata) for rr in reply.rr] == ["10.0.1.3"] and reply.rr[0].ttl == 600
    reply = DNSRecord.parse(wire.answer(q, table().resolve("sa", "nope", "A"), 600, 512))
    assert reply.header.rcode == RCODE.NXDOMAIN
    assert DNSRecord.parse(wire.servfail(q)).header.rcode == RCODE.SERVFAIL
    many = NameTable()
    many.replace([Net("n", "big")], [], [Ep(f"e{i}", "n", f"s{i}", ("all",), f"10.1.{i // 250}.{i % 250 + 1}") for i in range(100)])  # fmt: skip
    big = wire.answer(q, many.resolve("s0", "all", "A"), 600, wire.UDP_LIMIT)
    parsed = DNSRecord.parse(big)
    assert parsed.header.tc == 1 and not parsed.rr and len(big) <= wire.UDP_LIMIT
    full = DNSRecord.parse(wire.answer(q, many.resolve("s0", "all", "A"), 600, wire.TCP_LIMIT))
    assert len(full.rr) == 100 and full.rr[0].rtype == QTYPE.A
    # Garbage and responses are not queries.
    assert wire.parse(b"\x00\x01garbage") is None
    assert wire.parse(DNSRecord.question("b").reply().pack()) is None


def test_only_joined_endpoints_are_named_and_nameservers_are_parsed():
    from controller_service.models import Endpoint, EndpointState, Sandbox

    ep = Endpoint("e1", "web", "n1", "front", sandbox_id="s1", ipv4_address="10.0.1.9/24",
                  aliases=("www",), state=EndpointState.JOINED)  # fmt: skip
    box = Sandbox("s1", "box", "h1", container_id="c0ffee" * 8, hostname="box-host.corp")
    assert to_ep(ep, sandbox_names(box)) == Ep(
        "e1", "n1", "s1", ("web", "box", "box-host", "c0ffeec0ffee", "www"), "10.0.1.9", ""
    )
    ready = Endpoint("e1", "web", "n1", "front", state=EndpointState.READY)
    assert to_ep(ready) is None
    text = "nameserver 10.0.0.1\nnameserver bogus\n# nameserver 10.0.0.2\nnameserver fe80::1%eth0\n"
    assert nameservers(text) == ("10.0.0.1", "fe80::1")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--address", "resolver"], "address 'resolver': not an IP address"),
        (["--address", "fd00::53"], "an IPv4 address is expected"),
        (["--port", "0"], "port 0: expected 1..65535"),
        (["--ttl", "-1"], "ttl -1"),
        (["--upstream-timeout", "0"], "upstream_timeout 0.0"),
        (["--host-id", "bad host"], "host id 'bad host'"),
    ],
)
def test_bad_resolver_configuration_is_one_line_and_exit_2(tmp_path, capsys, flags, message):
    from dns_service.main import main

    argv = ["--listen", f"unix://{tmp_path}/dns.sock", "--redis-url", f"unix://{tmp_path}/r.sock"]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnm-dns: error: ") and message in err[0], err
