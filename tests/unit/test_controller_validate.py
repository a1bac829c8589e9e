"""Validation of create requests and proto conversion (pure)."""

from __future__ import annotations

import pytest

from cnm.controller.v1 import controller_pb2 as pb
from cnm.types.v1 import types_pb2
from controller_service import convert, validate
from controller_service.models import (
    DnsConfig,
    EndpointSpec,
    ExposedPort,
    ExtraHost,
    IpamConfig,
    IpamSpec,
    NetworkSpec,
    PortBinding,
    SandboxSpec,
)
from services.errors import InvalidArgument
from services.values import proto as values_pb


def _net(**kw) -> NetworkSpec:
    return NetworkSpec(name=kw.pop("name", "net1"), **kw)


def _ipam(*configs: IpamConfig, driver: str = "") -> IpamSpec:
    return IpamSpec(driver=driver, configs=configs)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        pytest.param(_net(name=""), "invalid network name", id="empty-name"),
        pytest.param(_net(name="a.b"), "invalid network name", id="dot-in-name"),
        pytest.param(_net(name="-x"), "invalid network name", id="leading-dash"),
        pytest.param(_net(name="x" * 65), "invalid network name", id="name-too-long"),
        pytest.param(_net(driver="bad driver"), "invalid driver name", id="driver-with-space"),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(subnet="10.0.0.0/33"))), "invalid subnet", id="bad-cidr"
        ),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(subnet="10.0.0.1/24"))), "host bits", id="host-bits-set"
        ),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(subnet="10.0.0.0/24", ip_range="10.0.1.0/25"))),
            "not inside subnet",
            id="ip-range-outside",
        ),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(subnet="10.0.0.0/24", gateway="10.0.1.1"))),
            "not inside subnet",
            id="gateway-outside",
        ),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(subnet="10.0.0.0/24", gateway="10.0.0.1/24"))),
            "without a prefix",
            id="gateway-with-prefix",
        ),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(subnet="10.0.0.0/24", gateway="10.0.0.255"))),
            "broadcast",
            id="gateway-broadcast",
        ),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(subnet="10.0.0.0/24", aux_addresses={"r": "10.9.0.1"}))),
            "not inside subnet",
            id="aux-outside",
        ),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(gateway="10.0.0.1"))),
            "need a subnet",
            id="gateway-without-subnet",
        ),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(subnet="10.0.0.0/16"), IpamConfig(subnet="10.0.1.0/24"))),
            "overlaps",
            id="overlapping-subnets",
        ),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(subnet="fd00::/64"))), "enable_ipv6", id="v6-without-enable"
        ),
        pytest.param(
            _net(ipam=_ipam(IpamConfig(subnet="10.0.0.0/24"), driver="null")),
            "null",
            id="null-ipam-with-subnet",
        ),
        pytest.param(_net(labels={"": "x"}), "label key", id="empty-label-key"),
        pytest.param(_net(options={" k": "x"}), "option key", id="padded-option-key"),
    ],
)
def test_bad_network_specs_are_invalid_argument(spec, words):
    with pytest.raises(InvalidArgument, match=words):
        validate.network_spec(spec)


def test_other_ipam_driver_names_are_remote_plugins():
    # Whether plugin "magic" exists is for the IPAM service to say (NOT_FOUND).
    assert validate.network_spec(_net(ipam=_ipam(driver="magic"))).ipam.driver == "magic"
    with pytest.raises(InvalidArgument, match="invalid IPAM driver name"):
        validate.network_spec(_net(ipam=_ipam(driver="../magic")))


def test_network_spec_is_normalised():
    spec = validate.network_spec(
        _net(enable_ipv6=True, ipam=_ipam(IpamConfig(subnet="fd00:0::/64", gateway="fd00::0:1")))
    )
    assert spec.driver == "bridge" and spec.ipam.driver == "default"
    assert spec.ipam.configs[0] == IpamConfig(subnet="fd00::/64", gateway="fd00::1")


def test_endpoint_addresses_bare_or_cidr_as_returned():
    spec = validate.endpoint_spec(EndpointSpec(ipv4_address="10.0.0.3/24", ipv6_address="fd00::3"))
    assert (spec.ipv4_address, spec.ipv6_address) == ("10.0.0.3", "fd00::3")
    with pytest.raises(InvalidArgument) as exc:
        validate.endpoint_spec(EndpointSpec(ipv4_address="nope"))
    assert exc.value.field == "ipv4_address"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        pytest.param(EndpointSpec(name="a b"), "invalid endpoint name", id="bad-name"),
        pytest.param(EndpointSpec(ipv4_address="10.0.0.300"), "ipv4_address", id="bad-ipv4"),
        pytest.param(EndpointSpec(ipv4_address="10.0.0.3/33"), "ipv4_address", id="bad-prefix"),
        pytest.param(EndpointSpec(ipv4_address="fd00::1"), "not an IPv4", id="v6-as-v4"),
        pytest.param(EndpointSpec(ipv6_address="10.0.0.1"), "not an IPv6", id="v4-as-v6"),
        pytest.param(EndpointSpec(mac_address="02:42:ac:11:00"), "mac_address", id="short-mac"),
        pytest.param(
            EndpointSpec(mac_address="03:42:ac:11:00:02"), "multicast", id="multicast-mac"
        ),
        pytest.param(EndpointSpec(aliases=("-x",)), "alias", id="bad-alias"),
        pytest.param(
            EndpointSpec(port_bindings=(PortBinding(container_port=0),)),
            "no container port",
            id="port-zero",
        ),
        pytest.param(
            EndpointSpec(port_bindings=(PortBinding(container_port=70000),)),
            "container port 70000",
            id="port-too-big",
        ),
        pytest.param(
            EndpointSpec(port_bindings=(PortBinding(protocol="icmp", container_port=1),)),
            "protocol",
            id="bad-protocol",
        ),
        pytest.param(
            EndpointSpec(
                port_bindings=(PortBinding(container_port=80, host_port=90, host_port_end=85),)
            ),
            "host port range end 85 is below",
            id="host-range-reversed",
        ),
        pytest.param(
            EndpointSpec(
                port_bindings=(
                    PortBinding(
                        container_port=80, container_port_end=82, host_port=90, host_port_end=91
                    ),
                )
            ),
            "same length",
            id="range-length-mismatch",
        ),
        pytest.param(
            EndpointSpec(port_bindings=(PortBinding(container_port=80, host_ip="nope"),)),
            "not an IP address",
            id="bad-host-ip",
        ),
        pytest.param(
            EndpointSpec(exposed_ports=(ExposedPort(port=0),)), "exposed port", id="exposed-zero"
        ),
    ],
)
def test_bad_endpoint_specs_are_invalid_argument(spec, words):
    with pytest.raises(InvalidArgument, match=words):
        validate.endpoint_spec(spec)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        pytest.param(SandboxSpec(name="x.y"), "invalid sandbox name", id="bad-name"),
        pytest.param(SandboxSpec(hostname="-bad"), "hostname", id="bad-hostname"),
        pytest.param(SandboxSpec(domainname="a..b"), "domainname", id="bad-domain"),
        pytest.param(
            SandboxSpec(external_key="proc/1/ns/net"), "absolute", id="relative-external-key"
        ),
        pytest.param(SandboxSpec(container_id="a b"), "container_id", id="space-in-container-id"),
        pytest.param(
            SandboxSpec(dns=DnsConfig(servers=("8.8.8",))), "DNS server", id="bad-dns-server"
        ),
        pytest.param(SandboxSpec(dns=DnsConfig(search=("bad domain",))), "search", id="bad-search"),
        pytest.param(
            SandboxSpec(dns=DnsConfig(options=("nd ots",))), "DNS option", id="bad-dns-option"
        ),
        pytest.param(
            SandboxSpec(extra_hosts=(ExtraHost("db", "x"),)),
            "extra host address",
            id="bad-extra-addr",
        ),
        pytest.param(
            SandboxSpec(extra_hosts=(ExtraHost("d b", "10.0.0.1"),)),
            "extra host name",
            id="bad-extra-name",
        ),
    ],
)
def test_bad_sandbox_specs_are_invalid_argument(spec, words):
    with pytest.raises(InvalidArgument, match=words):
        validate.sandbox_spec(spec)


# ------------------------------------------------------------------ conversion


def test_create_network_request_converts_to_spec():
    req = pb.CreateNetworkRequest(
        name="n",
        driver="bridge",
        ipam=pb.IpamSpec(
            configs=[types_pb2.IpamConfig(subnet="10.1.0.0/24", aux_addresses={"r": "10.1.0.9"})]
        ),
        labels={"a": "b"},
        host="h1",
    )
    spec = convert.network_spec_from(req)
    assert spec.ipam.configs[0].aux_addresses == {"r": "10.1.0.9"}
    assert (spec.name, spec.host, dict(spec.labels)) == ("n", "h1", {"a": "b"})


def test_port_bindings_round_trip_and_default_to_tcp():
    spec = pb.EndpointSpec(port_bindings=[types_pb2.PortBinding(container_port=80)])
    model = convert.endpoint_spec_from(spec).port_bindings[0]
    assert model.protocol == "tcp"
    assert values_pb.binding_to_pb(model).protocol == types_pb2.PROTOCOL_TCP


@pytest.mark.parametrize(
    "value", [pytest.param(0, id="unspecified"), pytest.param(7, id="unknown-number")]
)
def test_bad_scope_in_filter_is_invalid_argument(value):
    with pytest.raises(InvalidArgument, match="scope"):
        convert.filter_from(pb.NetworkFilter(scopes=[value]))


def test_controller_takes_underscore_in_names_as_docker_does():
    # Before issue 18 the controller refused '_' (RFC 1123) while the driver took it.
    sb = validate.sandbox_spec(SandboxSpec(hostname="web_1", domainname="corp_net.example"))
    assert (sb.hostname, sb.domainname) == ("web_1", "corp_net.example")
    ep = validate.endpoint_spec(EndpointSpec(aliases=("db_primary",)))
    assert ep.aliases == ("db_primary",)
