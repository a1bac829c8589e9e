"""cnmctl's output shapes, from messages built here: tables, JSON lines, inspect objects."""

from __future__ import annotations

import json

import pytest
from google.protobuf import timestamp_pb2

from clients import formatting as fmt
from cnm.controller.v1 import controller_pb2 as pb
from cnm.events.v1 import events_pb2
from cnm.types.v1 import types_pb2

NET_ID = "a" * 60 + "0001"
SB_ID = "b" * 60 + "0002"
EP_ID = "c" * 60 + "0003"


def ts(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def network() -> pb.Network:
    return pb.Network(
        id=NET_ID,
        name="web",
        driver="bridge",
        scope=types_pb2.SCOPE_LOCAL,
        ipam=pb.IpamSpec(
            configs=[
                types_pb2.IpamConfig(
                    subnet="10.9.0.0/24",
                    ip_range="10.9.0.128/25",
                    gateway="10.9.0.1",
                    aux_addresses={"router": "10.9.0.2"},
                ),
                types_pb2.IpamConfig(subnet="fd00:9::/64", gateway="fd00:9::1"),
            ]
        ),
        enable_ipv6=True,
        options={"com.docker.network.bridge.name": "br-web"},
        labels={"team": "a"},
        created=ts(1_700_000_000, 5),
        host="h1",
        subnets=[
            pb.SubnetStatus(subnet="10.9.0.0/24", ips_in_use=4, dynamic_ips_available=126),
            pb.SubnetStatus(subnet="fd00:9::/64", ips_in_use=2, dynamic_ips_available=2**64 - 1),
        ],
        endpoint_ids=[EP_ID, "d" * 64],
    )


def endpoint(**kw) -> pb.Endpoint:
    base = dict(
        id=EP_ID,
        name="c1-web",
        network_id=NET_ID,
        network_name="web",
        sandbox_id=SB_ID,
        ipv4_address="10.9.0.130/24",
        ipv6_address="fd00:9::2/64",
        mac_address="02:42:0a:09:00:82",
        state=pb.ENDPOINT_STATE_JOINED,
        gateway="10.9.0.1",
        published_ports=[
            types_pb2.PortBinding(
                protocol=types_pb2.PROTOCOL_TCP,
                host_ip="127.0.0.1",
                host_port=8080,
                container_port=80,
                container_ip="10.9.0.130",
            )
        ],
        exposed_ports=[types_pb2.ExposedPort(protocol=types_pb2.PROTOCOL_UDP, port=53)],
    )
    base.update(kw)
    return pb.Endpoint(**base)


def test_table_pads_like_docker_tabwriter():
    text = fmt.render_table(
        fmt.NETWORK_HEADERS,
        [["0123456789ab", "web", "bridge", "local"], ["ba9876543210", "a-long-name", "null", ""]],
    )
    assert text.splitlines() == [
        "NETWORK ID     NAME          DRIVER    SCOPE",
        "0123456789ab   web           bridge    local",
        "ba9876543210   a-long-name   null",
    ]


def test_empty_table_is_just_the_header():
    assert fmt.render_table(fmt.NETWORK_HEADERS, []) == "NETWORK ID   NAME      DRIVER    SCOPE\n"


def test_network_row_truncates_id_to_12_unless_no_trunc():
    assert fmt.network_row(network()) == [NET_ID[:12], "web", "bridge", "local"]
    assert fmt.network_row(network(), no_trunc=True)[0] == NET_ID


def test_network_json_line_is_docker_ls_format():
    line = fmt.json_line(fmt.network_json(network()))
    assert "\n" not in line
    assert json.loads(line) == {
        "CreatedAt": "2023-11-14T22:13:20.000000005Z",
        "Driver": "bridge",
        "ID": NET_ID[:12],
        "IPv6": "true",
        "Internal": "false",
        "Labels": "team=a",
        "Name": "web",
        "Scope": "local",
    }


def test_network_inspect_has_docker_keys_and_values():
    unjoined = endpoint(id="d" * 64, sandbox_id="", state=pb.ENDPOINT_STATE_READY)
    obj = fmt.network_inspect(network(), [endpoint(), unjoined], {SB_ID: "c1"})
    assert obj["Name"] == "web"
    assert obj["Id"] == NET_ID
    assert obj["Created"] == "2023-11-14T22:13:20.000000005Z"
    assert obj["Scope"] == "local"
    assert obj["Driver"] == "bridge"
    assert obj["EnableIPv6"] is True
    assert obj["Internal"] is False
    assert obj["IPAM"] == {
        "Driver": "default",
        "Options": {},
        "Config": [
            {
                "Subnet": "10.9.0.0/24",
                "IPRange": "10.9.0.128/25",
                "Gateway": "10.9.0.1",
                "AuxiliaryAddresses": {"router": "10.9.0.2"},
            },
            {
                "Subnet": "fd00:9::/64",
                "IPRange": "",
                "Gateway": "fd00:9::1",
                "AuxiliaryAddresses": {},
            },
        ],
    }
    # Only joined endpoints are containers, keyed by sandbox id.
    assert obj["Containers"] == {
        SB_ID: {
            "Name": "c1",
            "EndpointID": EP_ID,
            "MacAddress": "02:42:0a:09:00:82",
            "IPv4Address": "10.9.0.130/24",
            "IPv6Address": "fd00:9::2/64",
        }
    }
    assert obj["Options"] == {"com.docker.network.bridge.name": "br-web"}
    assert obj["Labels"] == {"team": "a"}
    assert obj["Status"] == {
        "IPAM": {
            "Subnets": {
                "10.9.0.0/24": {"IPsInUse": 4, "DynamicIPsAvailable": 126},
                "fd00:9::/64": {"IPsInUse": 2, "DynamicIPsAvailable": 2**64 - 1},
            }
        }
    }
    # The whole object survives JSON (uint64 counts included).
    assert json.loads(fmt.inspect_json([obj])) == [obj]


def test_inspect_json_is_always_an_array():
    assert json.loads(fmt.inspect_json([])) == []
    assert isinstance(json.loads(fmt.inspect_json([{"Name": "x"}])), list)


def test_network_inspect_of_an_unset_network_keeps_every_key():
    obj = fmt.network_inspect(pb.Network())
    assert set(obj) >= {
        "Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal",
        "Containers", "Options", "Labels", "Status",
    }  # fmt: skip
    assert obj["Created"] == ""
    assert obj["IPAM"]["Config"] == []
    assert obj["Status"]["IPAM"]["Subnets"] == {}


def test_ports_map_is_docker_shape():
    bindings = [
        types_pb2.PortBinding(protocol=types_pb2.PROTOCOL_TCP, host_port=8080, container_port=80),
        types_pb2.PortBinding(
            protocol=types_pb2.PROTOCOL_TCP, host_ip="::1", host_port=8080, container_port=80
        ),
        types_pb2.PortBinding(
            protocol=types_pb2.PROTOCOL_UDP,
            host_port=5000,
            host_port_end=5001,
            container_port=500,
            container_port_end=501,
        ),
        types_pb2.PortBinding(
            protocol=types_pb2.PROTOCOL_TCP, host_port=9000, host_port_end=9010, container_port=90
        ),
    ]
    exposed = [types_pb2.ExposedPort(protocol=types_pb2.PROTOCOL_TCP, port=443)]
    assert fmt.ports_map(bindings, exposed) == {
        "443/tcp": None,
        "80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": "8080"},
            {"HostIp": "::1", "HostPort": "8080"},
        ],
        "500/udp": [{"HostIp": "0.0.0.0", "HostPort": "5000"}],
        "501/udp": [{"HostIp": "0.0.0.0", "HostPort": "5001"}],
        "90/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9000-9010"}],
    }


def test_sandbox_inspect_has_the_documented_keys():
    sb = pb.Sandbox(
        id=SB_ID,
        name="c1",
        container_id="e" * 64,
        host="h1",
        hostname="c1",
        dns=types_pb2.DnsConfig(servers=["10.0.0.53"], search=["example.org"]),
        extra_hosts=[types_pb2.ExtraHost(hostname="db", address="10.9.0.9")],
        key="/run/netns/cnm-x",
        hosts_path="/var/lib/cnm/driver/x/hosts",
        resolv_conf_path="/var/lib/cnm/driver/x/resolv.conf",
        endpoints=[endpoint()],
    )
    obj = fmt.sandbox_inspect(sb)
    assert obj["Name"] == "c1"
    assert obj["Id"] == SB_ID
    assert obj["ContainerID"] == "e" * 64
    assert obj["Host"] == "h1"
    assert obj["Key"] == "/run/netns/cnm-x"
    assert obj["HostsPath"] == "/var/lib/cnm/driver/x/hosts"
    assert obj["ResolvConfPath"] == "/var/lib/cnm/driver/x/resolv.conf"
    assert obj["ExtraHosts"] == ["db:10.9.0.9"]
    assert obj["Lost"] is False
    sb.lost = True
    assert fmt.sandbox_inspect(sb)["Lost"] is True
    (ep,) = obj["Endpoints"]
    assert {k: ep[k] for k in ("Network", "EndpointID", "IPv4Address", "IPv6Address")} == {
        "Network": "web",
        "EndpointID": EP_ID,
        "IPv4Address": "10.9.0.130/24",
        "IPv6Address": "fd00:9::2/64",
    }
    assert ep["MacAddress"] == "02:42:0a:09:00:82"
    assert ep["Ports"] == {
        "53/udp": None,
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
    }
    assert json.loads(fmt.inspect_json([obj])) == [obj]


def test_endpoint_row_and_inspect():
    ep = endpoint()
    assert fmt.endpoint_row(ep) == [
        EP_ID[:12],
        "c1-web",
        "web",
        SB_ID[:12],
        "10.9.0.130/24",
        "joined",
    ]
    obj = fmt.endpoint_inspect(ep)
    assert obj["Id"] == EP_ID and obj["State"] == "joined" and obj["Gateway"] == "10.9.0.1"
    unjoined = endpoint(sandbox_id="", state=pb.ENDPOINT_STATE_READY, published_ports=[])
    assert fmt.endpoint_row(unjoined)[3] == ""
    assert fmt.endpoint_inspect(unjoined)["Ports"] == {"53/udp": None}


def test_sandbox_row_lists_its_networks():
    sb = pb.Sandbox(id=SB_ID, name="c1", host="h1", endpoints=[endpoint()])
    assert fmt.sandbox_row(sb) == [SB_ID[:12], "c1", "", "h1", "web"]


@pytest.mark.parametrize(
    "delta,text",
    [
        pytest.param(0.2, "Less than a second ago", id="sub-second"),
        pytest.param(1, "1 second ago", id="one-second"),
        pytest.param(42, "42 seconds ago", id="seconds"),
        pytest.param(125, "2 minutes ago", id="minutes"),
        pytest.param(7200, "2 hours ago", id="hours"),
        pytest.param(86400 * 3, "3 days ago", id="days"),
    ],
)
def test_age(delta, text):
    assert fmt.age(ts(1000), now=1000 + delta) == text


def test_host_row_and_json():
    host = pb.Host(
        id="h1",
        address="unix:///run/cnm/driver.sock",
        advertise_address="192.0.2.1",
        drivers=[
            types_pb2.DriverCapability(name="bridge", scope=types_pb2.SCOPE_LOCAL),
            types_pb2.DriverCapability(name="overlay", scope=types_pb2.SCOPE_GLOBAL),
        ],
        state=pb.HOST_STATE_UNREACHABLE,
        last_heartbeat=ts(1000),
    )
    assert fmt.host_row(host, now=1030) == [
        "h1",
        "unix:///run/cnm/driver.sock",
        "192.0.2.1",
        "unreachable",
        "bridge,overlay",
        "30 seconds ago",
    ]
    assert fmt.host_json(host)["Drivers"][1] == {"Name": "overlay", "Scope": "global", "Error": ""}


def test_driver_and_pool_rows():
    drv = pb.DriverInfo(
        name="weird", scope=types_pb2.SCOPE_UNSPECIFIED, hosts=["h1", "h2"], error="bad scope"
    )
    assert fmt.driver_row(drv) == ["weird", "", "h1,h2", "bad scope"]
    pool = pb.PoolUsage(
        pool_id="p", address_space="local", pool="10.9.0.0/24", owner=NET_ID, used=3, free=253
    )
    assert fmt.pool_row(pool) == ["10.9.0.0/24", "", "local", NET_ID[:12], "3", "253"]
    assert fmt.pool_json(pool)["Used"] == 3


@pytest.mark.parametrize(
    "event_type,kind",
    [
        (events_pb2.EVENT_TYPE_NETWORK_CREATED, ("network", "create")),
        (events_pb2.EVENT_TYPE_NETWORK_DELETED, ("network", "destroy")),
        (events_pb2.EVENT_TYPE_ENDPOINT_JOINED, ("endpoint", "join")),
        (events_pb2.EVENT_TYPE_ENDPOINT_LEFT, ("endpoint", "leave")),
        (events_pb2.EVENT_TYPE_HOST_DOWN, ("host", "down")),
        (events_pb2.EVENT_TYPE_UNSPECIFIED, ("unknown", "0")),
        (99, ("unknown", "99")),
    ],
    ids=lambda v: v if isinstance(v, int) else "-".join(v),
)
def test_event_kind(event_type, kind):
    assert fmt.event_kind(event_type) == kind


def test_event_line_and_json():
    ev = events_pb2.Event(
        revision=7,
        type=events_pb2.EVENT_TYPE_NETWORK_CREATED,
        time=ts(1_700_000_000),
        id=NET_ID,
        name="web",
        attributes={"driver": "bridge"},
    )
    assert fmt.event_line(ev) == (
        f"2023-11-14T22:13:20Z network create {NET_ID} (name=web, driver=bridge, revision=7)"
    )
    assert fmt.event_json(ev) == {
        "Revision": 7,
        "Type": "network",
        "Action": "create",
        "ID": NET_ID,
        "Name": "web",
        "Time": "2023-11-14T22:13:20Z",
        "Attributes": {"driver": "bridge"},
    }
