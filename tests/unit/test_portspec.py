"""`-p` specs parse exactly as `docker run -p` parses them (go-connections nat)."""

from __future__ import annotations

import pytest

from clients.portspec import PortMapping, PortSpecError, parse_port_range, parse_port_spec


def m(proto: str, ip: str, hp: int, hpe: int, cp: int) -> PortMapping:
    return PortMapping(proto, ip, hp, hpe, cp)


@pytest.mark.parametrize(
    "spec,expected",
    [
        pytest.param("80", [m("tcp", "", 0, 0, 80)], id="container-port-only-is-dynamic-tcp"),
        pytest.param("8080:80", [m("tcp", "", 8080, 8080, 80)], id="host-and-container"),
        pytest.param("53/udp", [m("udp", "", 0, 0, 53)], id="udp"),
        pytest.param("5000/sctp", [m("sctp", "", 0, 0, 5000)], id="sctp"),
        pytest.param("80/TCP", [m("tcp", "", 0, 0, 80)], id="protocol-case-insensitive"),
        pytest.param("80/", [m("tcp", "", 0, 0, 80)], id="empty-protocol-is-tcp"),
        pytest.param(
            "127.0.0.1:8080:80", [m("tcp", "127.0.0.1", 8080, 8080, 80)], id="ipv4-host-ip"
        ),
        pytest.param("127.0.0.1::80", [m("tcp", "127.0.0.1", 0, 0, 80)], id="ip-dynamic-port"),
        pytest.param("0.0.0.0:0:80", [m("tcp", "0.0.0.0", 0, 0, 80)], id="explicit-port-zero"),
        pytest.param("[::1]:8080:80", [m("tcp", "::1", 8080, 8080, 80)], id="ipv6-bracketed"),
        pytest.param("::1:8080:80", [m("tcp", "::1", 8080, 8080, 80)], id="ipv6-bare"),
        pytest.param("[::]::80/udp", [m("udp", "::", 0, 0, 80)], id="ipv6-any-dynamic-udp"),
        pytest.param(
            "[2001:db8::0001]:80:80",
            [m("tcp", "2001:db8::1", 80, 80, 80)],
            id="ipv6-normalised",
        ),
        pytest.param("[10.0.0.1]:80:80", [m("tcp", "10.0.0.1", 80, 80, 80)], id="ipv4-in-brackets"),
        pytest.param(
            "8000-8010:80", [m("tcp", "", 8000, 8010, 80)], id="host-range-one-container-port"
        ),
        pytest.param(
            "0.0.0.0:1234-1235:3333-3334/tcp",
            [m("tcp", "0.0.0.0", 1234, 1234, 3333), m("tcp", "0.0.0.0", 1235, 1235, 3334)],
            id="ranges-map-port-to-port",
        ),
        pytest.param(
            "80-82",
            [m("tcp", "", 0, 0, 80), m("tcp", "", 0, 0, 81), m("tcp", "", 0, 0, 82)],
            id="container-range-each-dynamic",
        ),
        pytest.param(
            "1.2.3.4::80-81/udp",
            [m("udp", "1.2.3.4", 0, 0, 80), m("udp", "1.2.3.4", 0, 0, 81)],
            id="container-range-with-ip",
        ),
        pytest.param("9000-9000:80", [m("tcp", "", 9000, 9000, 80)], id="one-port-range"),
        pytest.param("65535:65535", [m("tcp", "", 65535, 65535, 65535)], id="highest-port"),
        pytest.param("80/tcp/extra", [m("tcp", "", 0, 0, 80)], id="extra-slash-ignored-as-docker"),
    ],
)
def test_valid_specs(spec, expected):
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize(
    "spec,message",
    [
        pytest.param("", "no port specified", id="empty"),
        pytest.param("1234:", "no port specified", id="empty-container-port"),
        pytest.param("/tcp", "no port specified", id="protocol-only"),
        pytest.param("localhost:1234:80", "invalid IP address", id="hostname-not-ip"),
        pytest.param("1.2.3.4.5:80:80", "invalid IP address", id="bad-ipv4"),
        pytest.param("[::1:1234:80", "invalid IP address", id="unclosed-bracket"),
        pytest.param("[::1]]:1234:80", "invalid IP address", id="double-bracket"),
        pytest.param("[fe80::1%eth0]:80:80", "invalid IP address", id="zone-id"),
        pytest.param("80:80:80:80", "invalid IP address", id="too-many-colons"),
        pytest.param("1234:tcp", "invalid containerPort: tcp", id="container-port-word"),
        pytest.param("tcp:1234", "invalid hostPort: tcp", id="host-port-word"),
        pytest.param("65536", "invalid containerPort", id="container-port-too-big"),
        pytest.param("70000:80", "invalid hostPort", id="host-port-too-big"),
        pytest.param("0", "invalid containerPort", id="container-port-zero"),
        pytest.param("80-", "invalid containerPort", id="open-range"),
        pytest.param("81-80", "invalid containerPort", id="reversed-container-range"),
        pytest.param("8081-8080:80", "invalid hostPort", id="reversed-host-range"),
        pytest.param("1-2-3", "invalid containerPort", id="three-part-range"),
        pytest.param("+80", "invalid containerPort", id="signed-port"),
        pytest.param(" 80", "invalid containerPort", id="leading-space"),
        pytest.param("٨٠", "invalid containerPort", id="non-ascii-digits"),
        pytest.param(
            "0.0.0.0:1234-5678:80-81",
            "invalid ranges specified for container and host Ports",
            id="range-lengths-differ",
        ),
        pytest.param(
            "8080:80-81", "invalid ranges specified", id="single-host-port-container-range"
        ),
        pytest.param("1234/xyz", "invalid proto: xyz", id="unknown-protocol"),
        pytest.param("1234/icmp", "invalid proto: icmp", id="icmp-not-a-port-protocol"),
    ],
)
def test_invalid_specs_name_the_bad_part(spec, message):
    with pytest.raises(PortSpecError) as exc:
        parse_port_spec(spec)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    "text,expected",
    [("80", (80, 80)), ("8000-8010", (8000, 8010)), ("0", (0, 0)), ("5-5", (5, 5))],
)
def test_port_range(text, expected):
    assert parse_port_range(text) == expected


@pytest.mark.parametrize("text", ["", "a", "10-", "-10", "10-5", "1-2-3", "65536"])
def test_port_range_rejects(text):
    with pytest.raises(ValueError):
        parse_port_range(text)


@pytest.mark.parametrize(
    "spec",
    ["80/tcp", "8080:80/tcp", "127.0.0.1:8080:80/udp", "[::1]:8000-8010:80/tcp", "[::]::53/udp"],
)
def test_str_round_trips(spec):
    (mapping,) = parse_port_spec(spec)
    assert parse_port_spec(str(mapping)) == [mapping]
