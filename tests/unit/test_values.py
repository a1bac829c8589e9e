"""The shared value layer (services/values): one validation for every edge, the
proto conversion, and the JSON codec reading records an older cnm stored."""

from __future__ import annotations

import pytest

from cnm.types.v1 import types_pb2 as tpb
from controller_service import models as c
from controller_service import validate as controller_validate
from driver_service import models as d
from driver_service import specs as driver_specs
from ipam_service import allocator as ipam_allocator
from services.errors import InvalidArgument
from services.values import cidr, proto
from services.values.codec import from_json, to_json
from services.values.dns import DnsConfig, ExtraHost, validate_dns, validate_extra_host
from services.values.ports import ExposedPort, PortBinding, validate_binding

NID, EID, SID = "a" * 64, "b" * 64, "c" * 64

# Written by the version before services/values (driver: json.dumps(sort_keys=True);
# controller: compact). Stored records survive upgrades: these must still load.
OLD_DRIVER_ENDPOINT = (
    '{"attachment": {"default_route": false, "gateway": "10.0.0.1", "gateway_ipv6": "", '
    '"host_ifname": "veth1234567", "ifname": "eth0", "options": {}, "port_bindings": '
    '[{"container_ip": "10.0.0.2", "container_port": 80, "container_port_end": 0, '
    '"host_ip": "0.0.0.0", "host_port": 8080, "host_port_end": 0, "protocol": "tcp"}], '
    f'"sandbox_id": "{SID}", "seq": 1, "state": "joined", "static_routes": []}}, '
    '"mac": "02:42:0a:00:00:02", "spec": {"address": "10.0.0.2/24", "address_ipv6": "", '
    f'"aliases": ["web"], "endpoint_id": "{EID}", "exposed_ports": [{{"port": 53, '
    '"protocol": "udp"}], "mac": "", "name": "", '
    f'"network_id": "{NID}", "options": {{}}, "port_bindings": [{{"container_ip": "", '
    '"container_port": 80, "container_port_end": 0, "host_ip": "", "host_port": 8080, '
    '"host_port_end": 0, "protocol": "tcp"}]}}'
)
OLD_DRIVER_SANDBOX = (
    '{"hosts_path": "/x/hosts", "key": "/run/netns/cnm-c", "netns_name": "cnm-c", '
    '"resolv_conf_path": "/x/resolv.conf", "spec": {"dns": {"options": ["ndots:2"], '
    '"search": ["example.com"], "servers": ["1.1.1.1"]}, "domainname": "", '
    '"external_key": "", "extra_hosts": [{"address": "10.0.0.5", "hostname": "db"}], '
    '"hostname": "", "name": "s", "runtime_moves_interfaces": false, '
    f'"sandbox_id": "{SID}"}}, "state": "ready"}}'
)
OLD_CONTROLLER_ENDPOINT = (
    '{"aliases":[],"created":0.0,"exposed_ports":[{"port":80,"protocol":"tcp"}],'
    '"gateway":"","gateway_ipv6":"","host":"","host_interface_name":"","id":"e1",'
    '"implicit":false,"interface_name":"","ipv4_address":"","ipv6_address":"",'
    '"mac_address":"","name":"web","network_id":"n1","network_name":"net","op_since":0.0,'
    '"options":{},"owner":"","port_bindings":[{"container_ip":"","container_port":80,'
    '"container_port_end":0,"host_ip":"","host_port":8080,"host_port_end":0,'
    '"protocol":"tcp"}],"published_ports":[{"container_ip":"10.0.0.2","container_port":80,'
    '"container_port_end":0,"host_ip":"0.0.0.0","host_port":8080,"host_port_end":0,'
    '"protocol":"tcp"}],"sandbox_id":"","state":"joined"}'
)
OLD_CONTROLLER_SANDBOX = (
    '{"container_id":"","created":0.0,"dns":{"options":["ndots:2"],"search":["example.com"],'
    '"servers":["1.1.1.1"]},"domainname":"","external_key":"","extra_hosts":'
    '[{"address":"10.0.0.5","hostname":"db"}],"host":"h1","hostname":"","hosts_path":"",'
    '"id":"s1","key":"","labels":{},"lost":false,"name":"s","op_since":0.0,"owner":"",'
    '"purge_endpoints":false,"resolv_conf_path":"","runtime_moves_interfaces":false,'
    '"state":"ready"}'
)


def test_records_stored_by_the_previous_version_still_load():
    ep = from_json(d.EndpointRecord, OLD_DRIVER_ENDPOINT)
    assert ep.spec.port_bindings == (PortBinding("tcp", "", 8080, 0, 80, 0, ""),)
    assert ep.spec.exposed_ports == (ExposedPort("udp", 53),)
    assert ep.attachment is not None and ep.attachment.port_bindings[0].container_ip == "10.0.0.2"
    sb = from_json(d.SandboxRecord, OLD_DRIVER_SANDBOX)
    assert sb.spec.dns == d.DnsConfig(("1.1.1.1",), ("example.com",), ("ndots:2",))
    assert sb.spec.extra_hosts == (d.ExtraHost("db", "10.0.0.5"),)
    cep = from_json(c.Endpoint, OLD_CONTROLLER_ENDPOINT)
    assert cep.state is c.EndpointState.JOINED
    assert cep.published_ports == (PortBinding("tcp", "0.0.0.0", 8080, 0, 80, 0, "10.0.0.2"),)
    csb = from_json(c.Sandbox, OLD_CONTROLLER_SANDBOX)
    assert csb.extra_hosts == (c.ExtraHost("db", "10.0.0.5"),) and csb.state is c.State.READY
    # ... and they round-trip unchanged in the one codec.
    for rec in (ep, sb, cep, csb):
        assert from_json(type(rec), to_json(rec)) == rec


def test_controller_and_driver_share_the_value_types():
    assert c.PortBinding is d.PortBinding is PortBinding
    assert c.ExposedPort is d.ExposedPort is ExposedPort
    assert c.DnsConfig is d.DnsConfig is DnsConfig
    assert c.ExtraHost is d.ExtraHost is ExtraHost


@pytest.mark.parametrize(
    "binding",
    [
        pytest.param(PortBinding(container_port=0), id="container-port-0"),
        pytest.param(PortBinding(container_port=80, host_port=70000), id="host-port-70000"),
        pytest.param(PortBinding(protocol="icmp", container_port=80), id="protocol"),
        pytest.param(PortBinding(container_port=80, host_ip="::1"), id="ipv6-loopback"),
        pytest.param(
            PortBinding(container_port=80, container_port_end=82, host_port=90, host_port_end=91),
            id="range-lengths",
        ),
    ],
)
def test_controller_and_driver_refuse_a_binding_with_the_same_error(binding):
    with pytest.raises(InvalidArgument) as shared:
        validate_binding(binding)
    with pytest.raises(InvalidArgument) as at_controller:
        controller_validate.endpoint_spec(c.EndpointSpec(port_bindings=(binding,)))
    with pytest.raises(InvalidArgument) as at_driver:
        driver_specs.endpoint_spec(d.EndpointSpec(NID, EID, port_bindings=(binding,)))
    for err in (at_controller.value, at_driver.value):
        assert (err.message, err.reason) == (shared.value.message, shared.value.reason)


def test_bad_binding_names_the_field_at_fault():
    with pytest.raises(InvalidArgument) as err:
        validate_binding(PortBinding(container_port=80, host_port=90, host_port_end=85))
    assert (err.value.reason, err.value.field) == ("INVALID_PORT_BINDING", "host_port_end")
    assert err.value.metadata == {"binding": "90-85:80/tcp"}


def test_port_binding_proto_round_trip_carries_every_field():
    b = PortBinding("sctp", "10.0.0.1", 8000, 8010, 80, 90, "172.18.0.2")
    assert proto.binding_from_pb(proto.binding_to_pb(b)) == b
    assert proto.exposed_from_pb(proto.exposed_to_pb(ExposedPort("udp", 53))) == ExposedPort(
        "udp", 53
    )


@pytest.mark.parametrize(
    "value", [pytest.param(0, id="unspecified"), pytest.param(9, id="unknown")]
)
def test_protocol_the_driver_api_does_not_default(value):
    msg = tpb.PortBinding(protocol=value, container_port=80)
    with pytest.raises(InvalidArgument, match="protocol must be") as err:
        proto.binding_from_pb(msg)
    assert err.value.reason == "INVALID_PROTOCOL"
    if value == 0:
        assert proto.binding_from_pb(msg, default_tcp=True).protocol == "tcp"


@pytest.mark.parametrize(
    ("dns", "extra", "reason"),
    [
        pytest.param(DnsConfig(servers=("8.8.8",)), (), "INVALID_DNS_SERVER", id="server"),
        pytest.param(DnsConfig(search=("a;b",)), (), "INVALID_DNS_SEARCH_DOMAIN", id="search"),
        pytest.param(DnsConfig(options=("ndots:2\n",)), (), "INVALID_DNS_OPTION", id="option-nl"),
        pytest.param(DnsConfig(), (ExtraHost("d b", "10.0.0.1"),), "INVALID_EXTRA_HOST_NAME",
                     id="extra-name"),
        pytest.param(DnsConfig(), (ExtraHost("db\n", "10.0.0.1"),), "INVALID_EXTRA_HOST_NAME",
                     id="extra-name-newline"),
        pytest.param(DnsConfig(), (ExtraHost("db", "10.0.0.256"),), "INVALID_EXTRA_HOST_ADDRESS",
                     id="extra-address"),
    ],
)  # fmt: skip
def test_controller_and_driver_refuse_dns_values_with_the_same_error(dns, extra, reason):
    with pytest.raises(InvalidArgument) as at_controller:
        controller_validate.sandbox_spec(c.SandboxSpec(dns=dns, extra_hosts=extra))
    with pytest.raises(InvalidArgument) as at_driver:
        driver_specs.sandbox_spec(d.SandboxSpec(SID, dns=dns, extra_hosts=extra))
    assert at_controller.value.reason == at_driver.value.reason == reason
    assert at_controller.value.message == at_driver.value.message


def test_dns_values_are_normalised_and_round_trip_through_proto():
    dns = validate_dns(DnsConfig(("2001:DB8::1",), ("example.com",), ("ndots:2",)))
    assert dns.servers == ("2001:db8::1",)
    assert proto.dns_from_pb(proto.dns_to_pb(dns)) == dns
    hosts = (validate_extra_host(ExtraHost("db", "10.0.0.5")),)
    assert proto.extra_hosts_from_pb(proto.extra_hosts_to_pb(hosts)) == hosts


# Docker 20.10 takes '_' in all three (its runtime checks only the kernel's 64 bytes).
GOOD_NAMES = ("web", "web_1", "_x", "db-1.corp_net.example", "a.", "x" * 63)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_controller_and_driver_accept_the_same_names(name):
    sb = controller_validate.sandbox_spec(c.SandboxSpec(hostname=name, domainname=name))
    assert (sb.hostname, sb.domainname) == (name, name)
    ep = controller_validate.endpoint_spec(c.EndpointSpec(aliases=(name, name)))
    assert ep.aliases == (name,)
    driver_specs.sandbox_spec(d.SandboxSpec(SID, hostname=name, domainname=name))
    assert driver_specs.endpoint_spec(d.EndpointSpec(NID, EID, aliases=(name,))).aliases == (name,)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("hostname", "a b", id="hostname-space"),
        pytest.param("hostname", "-web", id="hostname-leading-dash"),
        pytest.param("hostname", "web\n", id="hostname-newline"),
        pytest.param("hostname", "x" * 64, id="hostname-label-64"),
        pytest.param("hostname", "a." * 32 + "b", id="hostname-over-64"),
        pytest.param("domainname", "a..b", id="domainname-empty-label"),
        pytest.param("domainname", "a#b", id="domainname-hash"),
        pytest.param("aliases", ".x", id="alias-leading-dot"),
        pytest.param("aliases", "x-", id="alias-trailing-dash"),
        pytest.param("aliases", "a" * 64 + ".b", id="alias-label-64"),
        pytest.param("aliases", "a." * 127, id="alias-over-253"),
    ],
)
def test_controller_and_driver_refuse_a_name_with_the_same_error(field, value):
    if field == "aliases":
        c_spec, d_spec = (
            c.EndpointSpec(aliases=(value,)),
            d.EndpointSpec(NID, EID, aliases=(value,)),
        )
        c_check, d_check = controller_validate.endpoint_spec, driver_specs.endpoint_spec
    else:
        c_spec, d_spec = c.SandboxSpec(**{field: value}), d.SandboxSpec(SID, **{field: value})
        c_check, d_check = controller_validate.sandbox_spec, driver_specs.sandbox_spec
    with pytest.raises(InvalidArgument) as at_controller:
        c_check(c_spec)
    with pytest.raises(InvalidArgument) as at_driver:
        d_check(d_spec)
    for err in (at_controller.value, at_driver.value):
        assert err.field == field
        assert err.reason == "INVALID_" + ("ALIAS" if field == "aliases" else field.upper())
        assert repr(value)[:20] in err.message, "the message shows the value as given"
    assert at_controller.value.message == at_driver.value.message


@pytest.mark.parametrize(
    ("value", "why"),
    [
        pytest.param("02:42:ac:11:00", "six hex octets", id="short"),
        pytest.param("zz:42:ac:11:00:02", "six hex octets", id="not-hex"),
        pytest.param("03:42:ac:11:00:02", "multicast", id="multicast"),
        pytest.param("00:00:00:00:00:00", "all zero", id="all-zero"),
    ],
)
def test_controller_and_driver_refuse_a_mac_with_the_same_error(value, why):
    with pytest.raises(InvalidArgument, match=why) as at_controller:
        controller_validate.endpoint_spec(c.EndpointSpec(mac_address=value))
    with pytest.raises(InvalidArgument) as at_driver:
        driver_specs.endpoint_spec(d.EndpointSpec(NID, EID, mac=value))
    for err in (at_controller.value, at_driver.value):
        assert (err.reason, err.field) == ("INVALID_MAC_ADDRESS", "mac_address")
    assert at_controller.value.message == at_driver.value.message


def test_a_mac_is_normalised_the_same_at_both_edges():
    assert (
        controller_validate.endpoint_spec(
            c.EndpointSpec(mac_address="02-42-AC-11-00-02")
        ).mac_address
        == "02:42:ac:11:00:02"
    )
    assert (
        driver_specs.endpoint_spec(d.EndpointSpec(NID, EID, mac="02-42-AC-11-00-02")).mac
        == "02:42:ac:11:00:02"
    )


@pytest.mark.parametrize(
    ("value", "why"),
    [
        pytest.param(
            "10.1.2.3/16", "host bits are set (did you mean 10.1.0.0/16?)", id="host-bits"
        ),
        pytest.param("10.1.0.0", "give a prefix length, e.g. 10.1.0.0/32", id="no-prefix"),
        pytest.param("10.1.0.0/33", "not a CIDR such as 172.20.0.0/16", id="prefix-33"),
        pytest.param(
            "fd00::1/64", "host bits are set (did you mean fd00::/64?)", id="v6-host-bits"
        ),
        pytest.param("x" * 100, "not a CIDR such as 172.20.0.0/16", id="oversized"),
    ],
)
def test_controller_driver_and_ipam_refuse_a_cidr_with_the_same_words(value, why):
    """One CIDR rule at every edge: the user reads the same reason wherever it is caught."""
    with pytest.raises(InvalidArgument) as at_controller:
        controller_validate.ipam_config(c.IpamConfig(subnet=value))
    with pytest.raises(InvalidArgument) as at_driver:
        driver_specs.network_spec(
            d.NetworkSpec(NID, "net1", "bridge", ipv4=(d.IpamData(pool=value),))
        )
    with pytest.raises(InvalidArgument) as at_ipam:
        ipam_allocator.pool_request(
            space="LocalDefault",
            pool=value,
            sub_pool="",
            options={},
            v6=False,
            owner="",
            request_id="",
        )
    for err in (at_controller.value, at_driver.value, at_ipam.value):
        assert err.message.endswith(why), err.message
    assert (at_controller.value.reason, at_controller.value.field) == ("INVALID_SUBNET", "subnet")


def test_a_cidr_is_returned_as_a_network():
    assert str(cidr.network("fd00:1::/64")) == "fd00:1::/64"
    assert cidr.network("10.0.0.0/8").prefixlen == 8
