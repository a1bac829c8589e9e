"""Pure parts of port publishing: binding validation, request planning, /proc/net parsing."""

from __future__ import annotations

import pytest

from driver_service.models import PortBinding
from driver_service.ports import describe, plan_requests, validate_binding
from driver_service.ports.listeners import busy_ports, overlaps, parse_inet, parse_sctp_eps
from driver_service.ports.plan import PortRequest, Target, parse_port_range
from services.errors import InvalidArgument


def pb(**kw) -> PortBinding:
    return PortBinding(**{"protocol": "tcp", "container_port": 80, **kw})


@pytest.mark.parametrize(
    "binding, message",
    [
        pytest.param(pb(host_port=0, host_port_end=8010), "needs a start port", id="port-0-with-range"),
        pytest.param(pb(host_port=8010, host_port_end=8000), "below its start 8010", id="host-end-below-start"),
        pytest.param(pb(container_port=90, container_port_end=80), "below its start 90", id="container-end-below-start"),
        pytest.param(pb(host_port=70000), "host port 70000 is out of range", id="host-port-70000"),
        pytest.param(pb(container_port=70000), "container port 70000", id="container-port-70000"),
        pytest.param(pb(host_port=8000, host_port_end=70000), "host port range end 70000", id="host-end-70000"),
        pytest.param(pb(container_port=0), "no container port", id="container-port-0"),
        pytest.param(pb(protocol="icmp"), "must be tcp, udp or sctp", id="unknown-protocol"),
        pytest.param(pb(host_ip="localhost"), "is not an IP address", id="host-ip-a-name"),
        pytest.param(pb(host_ip="10.0.0.300"), "is not an IP address", id="host-ip-bad-octet"),
        pytest.param(pb(host_ip="224.0.0.1"), "multicast", id="host-ip-multicast"),
        pytest.param(pb(host_ip="::1"), "::1 is not supported", id="host-ip-ipv6-loopback"),
        pytest.param(pb(host_ip="::ffff:10.0.0.1"), "IPv4-mapped", id="host-ip-v4-mapped"),
        pytest.param(
            pb(host_port=8000, host_port_end=8005, container_port_end=90),
            "same length",
            id="ranges-of-different-length",
        ),
        pytest.param(pb(host_port=8000, container_port_end=90), "same length", id="container-range-one-host-port"),
    ],
)  # fmt: skip
def test_bad_bindings_are_refused_naming_the_binding(binding, message):
    with pytest.raises(InvalidArgument, match=message) as err:
        validate_binding(binding)
    assert err.value.reason == "INVALID_PORT_BINDING" or "protocol" in err.value.message


def test_validation_normalises():
    out = validate_binding(
        PortBinding("UDP", "2001:DB8::0001", 53, 53, 53, 53, container_ip="10.0.0.9")
    )
    assert out == PortBinding("udp", "2001:db8::1", 53, 0, 53, 0, "")


@pytest.mark.parametrize(
    "binding, text",
    [
        (pb(host_port=8080), "8080:80/tcp"),
        (pb(), "80/tcp"),
        (pb(host_ip="127.0.0.1", host_port=8000, host_port_end=8010), "127.0.0.1:8000-8010:80/tcp"),
        (pb(host_ip="::", container_port_end=90, protocol="udp"), "[::]::80-90/udp"),
    ],
)
def test_describe_uses_docker_notation(binding, text):
    assert describe(binding) == text


V4, V6 = "10.1.0.2/24", "fd00::2/64"


def test_fixed_port_without_host_ip_publishes_on_both_families_with_one_port():
    reqs = plan_requests([pb(host_port=8080)], address=V4, address_ipv6=V6)
    assert reqs == [
        PortRequest(
            "tcp",
            80,
            (Target("0.0.0.0", "10.1.0.2"), Target("::", "fd00::2")),
            8080,
            8080,
            spec="8080:80/tcp",
        )
    ]


def test_host_binding_option_replaces_the_ipv4_wildcard():
    reqs = plan_requests(
        [pb(host_port=8080)], address=V4, address_ipv6="", default_ipv4="127.0.0.1"
    )
    assert reqs[0].targets == (Target("127.0.0.1", "10.1.0.2"),)


def test_a_host_range_asks_for_one_port_of_it():
    [req] = plan_requests([pb(host_port=8000, host_port_end=8010)], address=V4, address_ipv6="")
    assert (req.low, req.high, req.container_port, req.dynamic) == (8000, 8010, 80, False)


def test_ranges_map_port_to_port():
    reqs = plan_requests(
        [pb(host_port=8000, host_port_end=8002, container_port_end=82)], address=V4, address_ipv6=""
    )
    assert [(r.low, r.high, r.container_port) for r in reqs] == [
        (8000, 8000, 80),
        (8001, 8001, 81),
        (8002, 8002, 82),
    ]


def test_no_host_port_is_one_dynamic_port_per_container_port():
    reqs = plan_requests([pb(container_port_end=81)], address=V4, address_ipv6="")
    assert [(r.dynamic, r.container_port) for r in reqs] == [(True, 80), (True, 81)]


def test_a_specific_host_address_forwards_to_the_same_family_only():
    [req] = plan_requests([pb(host_ip="fd00::99", host_port=80)], address=V4, address_ipv6=V6)
    assert req.targets == (Target("fd00::99", "fd00::2"),)
    with pytest.raises(InvalidArgument, match="no IPv6 address"):
        plan_requests([pb(host_ip="fd00::99", host_port=80)], address=V4, address_ipv6="")


@pytest.mark.parametrize(
    "text, expected",
    [("32768\t60999\n", (32768, 60999)), ("1024 1024", (1024, 1024)), ("9 5", None), ("", None),
     ("0 100", None), ("a b", None), ("1 70000", None)],
)  # fmt: skip
def test_dynamic_range_text(text, expected):
    assert parse_port_range(text) == expected


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1
"""
TCP6 = """  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A
   1: 0000000000000000FFFF00000100007F:1F92 00000000000000000000000000000000:0000 0A
   2: B80D0120000000000000000001000000:1F93 00000000000000000000000000000000:0000 0A
"""
UDP = """  sl  local_address rem_address   st
  10: 00000000:0035 00000000:0000 07 00000000:00000000
  11: 0100007F:A000 0100007F:0035 01 00000000:00000000
"""


def test_proc_net_listeners_are_parsed():
    assert parse_inet(TCP, udp=False) == {("0.0.0.0", 8080), ("127.0.0.1", 80)}
    assert parse_inet(TCP6, udp=False) == {("::", 8081), ("127.0.0.1", 8082), ("2001:db8::1", 8083)}
    # A connected UDP socket is a client: not a listener.
    assert parse_inet(UDP, udp=True) == {("0.0.0.0", 53)}


def test_sctp_endpoints_are_parsed():
    text = (
        " ENDPT     SOCK   STY SST HBKT LPORT   UID INODE LADDRS\n"
        "ffff8 ffff9 2   10  7    5000      0 123 10.0.0.1 127.0.0.1\n"
    )
    assert parse_sctp_eps(text) == {("10.0.0.1", 5000), ("127.0.0.1", 5000)}


@pytest.mark.parametrize(
    "listener, host, hit",
    [
        ("0.0.0.0", "127.0.0.1", True),
        ("127.0.0.1", "0.0.0.0", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "10.0.0.1", False),
        ("::", "0.0.0.0", True),  # dual-stack unless IPV6_V6ONLY, which /proc does not show
        ("0.0.0.0", "::", False),
        ("fd00::1", "::", True),
        ("fd00::1", "10.0.0.1", False),
    ],
)
def test_listener_overlap_rule(listener, host, hit):
    assert overlaps(listener, host) is hit


def test_busy_ports_are_those_of_the_range_on_overlapping_addresses():
    listeners = {("0.0.0.0", 8001), ("10.9.9.9", 8002), ("127.0.0.1", 9000), ("::", 8004)}
    assert busy_ports(listeners, ["127.0.0.1"], 8000, 8010) == [8001, 8004]
    assert busy_ports(listeners, ["0.0.0.0"], 8000, 8010) == [8001, 8002, 8004]
