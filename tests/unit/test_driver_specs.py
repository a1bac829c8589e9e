"""Validation of requests before anything reaches the kernel, and record round trips."""

from __future__ import annotations

import pytest

from driver_service import specs
from driver_service.models import (
    Attachment,
    DnsConfig,
    EndpointRecord,
    EndpointSpec,
    ExtraHost,
    IpamData,
    NetworkRecord,
    NetworkSpec,
    PortBinding,
    SandboxRecord,
    SandboxSpec,
)
from services.errors import InvalidArgument
from services.values.codec import from_json, to_json

NID, EID, SID = "a" * 64, "b" * 64, "c" * 64


def test_network_spec_normalises_gateway_to_the_pool_prefix():
    spec = specs.network_spec(
        NetworkSpec(NID, "n1", "bridge", ipv4=(IpamData("10.1.0.0/16", "10.1.0.1/24"),))
    )
    assert spec.ipv4[0].gateway == "10.1.0.1/16"


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(NetworkSpec("A" * 64, "n", "bridge"), id="id-upper-case"),
        pytest.param(NetworkSpec(NID, "n.1", "bridge"), id="name-with-dot"),
        pytest.param(NetworkSpec(NID, "n", ""), id="no-driver"),
        pytest.param(NetworkSpec(NID, "n", "bridge", ipv4=(IpamData("fd00::/64", "fd00::1/64"),)), id="v6-pool-in-v4"),
        pytest.param(NetworkSpec(NID, "n", "bridge", ipv4=(IpamData("10.0.0.0/24", "10.0.1.1/24"),)), id="gateway-outside"),
        pytest.param(
            NetworkSpec(NID, "n", "bridge", ipv4=(IpamData("10.0.0.0/24", "", aux_addresses={"x": "10.9.0.1"}),)),
            id="aux-outside",
        ),
    ],
)  # fmt: skip
def test_bad_network_specs(spec):
    with pytest.raises(InvalidArgument):
        specs.network_spec(spec)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(EndpointSpec(NID, EID, address="10.0.0.2"), id="no-prefix"),
        pytest.param(EndpointSpec(NID, EID, address="127.0.0.2/8"), id="loopback"),
        pytest.param(EndpointSpec(NID, EID, address_ipv6="10.0.0.2/24"), id="v4-in-v6"),
        pytest.param(EndpointSpec(NID, EID, mac="02:42:ac:11:00"), id="short-mac"),
        pytest.param(EndpointSpec(NID, EID, aliases=("x\ny",)), id="alias-newline"),
        pytest.param(EndpointSpec(NID, EID, port_bindings=(PortBinding("icmp", container_port=1),)), id="proto"),
        pytest.param(
            EndpointSpec(NID, EID, port_bindings=(PortBinding("tcp", host_port=90, host_port_end=80, container_port=1),)),
            id="reversed-range",
        ),
    ],
)  # fmt: skip
def test_bad_endpoint_specs(spec):
    with pytest.raises(InvalidArgument):
        specs.endpoint_spec(spec)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(SandboxSpec("../etc"), id="id-path"),
        pytest.param(SandboxSpec(SID, hostname="a b"), id="hostname-space"),
        pytest.param(SandboxSpec(SID, hostname="x" * 64), id="label-too-long"),
        pytest.param(SandboxSpec(SID, dns=DnsConfig(search=("a;b",))), id="search"),
        pytest.param(SandboxSpec(SID, extra_hosts=(ExtraHost("db", "10.0.0.256"),)), id="extra-ip"),
    ],
)
def test_bad_sandbox_specs(spec):
    with pytest.raises(InvalidArgument):
        specs.sandbox_spec(spec)


def test_records_round_trip_through_json():
    net = NetworkRecord(
        NetworkSpec(
            NID,
            "n",
            "bridge",
            {"k": "v"},
            (IpamData("10.0.0.0/24", "10.0.0.1/24", aux_addresses={"r": "10.0.0.9/24"}),),
        ),
        "ready",
        {"bridge": "br0"},
    )
    ep = EndpointRecord(
        EndpointSpec(
            NID,
            EID,
            "10.0.0.2/24",
            aliases=("a",),
            port_bindings=(PortBinding("udp", "", 53, 0, 53),),
        ),
        "02:42:0a:00:00:02",
        Attachment(
            SID,
            "joined",
            "eth0",
            "vethbbbbbbbbbbb",
            "10.0.0.1",
            default_route=True,
            seq=3,
            port_bindings=(PortBinding("udp", "0.0.0.0", 53, 0, 53, 0, "10.0.0.2"),),
        ),
    )
    sb = SandboxRecord(
        SandboxSpec(SID, "s", dns=DnsConfig(("1.1.1.1",)), extra_hosts=(ExtraHost("h", "10.0.0.5"),)),
        "ready", "/run/netns/cnm-cccccccccccc", "cnm-cccccccccccc", "/x/hosts", "/x/resolv.conf",
    )  # fmt: skip
    for rec in (net, ep, sb):
        assert from_json(type(rec), to_json(rec)) == rec
