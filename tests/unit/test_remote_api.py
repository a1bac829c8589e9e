"""Pure parts of remote plugins: discovery order and spec files (temp dirs
only), libnetwork's request shapes, response parsing and scope negotiation."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from driver_service.drivers.remote import api
from driver_service.models import (
    EndpointSpec,
    ExposedPort,
    IpamData,
    NetworkSpec,
    PortBinding,
    StaticRoute,
)
from services.errors import FailedPrecondition, InvalidArgument, NotFound
from services.plugins import Discovery, read_spec_file, validate_plugin_name

NID, EID = "a" * 64, "b" * 64


# --- discovery ---------------------------------------------------------------------------------


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    out = {k: tmp_path / k for k in ("mine", "sock", "etc", "share")}
    for d in out.values():
        d.mkdir()
    return out


def _discovery(d: dict[str, Path]) -> Discovery:
    return Discovery(
        [str(d["mine"])], socket_dirs=[str(d["sock"])], spec_dirs=[str(d["etc"]), str(d["share"])]
    )


def _socket(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    return s


def test_spec_file_wins_over_socket(dirs):
    sock = _socket(dirs["sock"] / "p.sock")
    try:
        (dirs["share"] / "p.spec").write_text("unix:///elsewhere/p.sock\n")
        spec = _discovery(dirs).find("p")
        assert spec.addr == "unix:///elsewhere/p.sock" and spec.source.endswith("share/p.spec")
    finally:
        sock.close()


def test_configured_dir_first_then_docker_places(dirs):
    (dirs["etc"] / "p.spec").write_text("tcp://127.0.0.1:9001")
    (dirs["mine"] / "p.json").write_text('{"Name": "other", "Addr": "tcp://127.0.0.1:9002"}')
    spec = _discovery(dirs).find("p")
    # libnetwork names a plugin after the file it asked for, not the "Name" inside.
    assert (spec.name, spec.addr) == ("p", "tcp://127.0.0.1:9002")


def test_socket_in_a_subdirectory_and_listing_of_own_dirs(dirs):
    (dirs["mine"] / "q").mkdir()
    sock = _socket(dirs["mine"] / "q" / "q.sock")
    try:
        (dirs["mine"] / "r.spec").write_text("tcp://localhost:1")
        (dirs["mine"] / "notes.txt").write_text("x")
        d = _discovery(dirs)
        assert d.find("q").addr == f"unix://{dirs['mine']}/q/q.sock"
        assert d.names() == ["q", "r"]
    finally:
        sock.close()


def test_unknown_plugin_is_not_found_naming_the_places(dirs):
    with pytest.raises(NotFound, match="no plugin named 'ghost'") as e:
        _discovery(dirs).find("ghost")
    assert str(dirs["share"]) in str(e.value) and e.value.reason == "PLUGIN_NOT_FOUND"


def test_json_spec_with_tls(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(
        '{"Name":"t","Addr":"tcp://10.0.0.1:443","TLSConfig":{"InsecureSkipVerify":true,'
        '"CAFile":"/ca.pem","CertFile":"/c.pem","KeyFile":"/k.pem"}}'
    )
    spec = read_spec_file("t", str(path))
    assert spec.addr == "tcp://10.0.0.1:443"
    assert spec.tls is not None and spec.tls.insecure_skip_verify and spec.tls.ca_file == "/ca.pem"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param("x.spec", "http:/no-host", id="spec-bad-url"),
        pytest.param("x.spec", "ftp://host:21", id="spec-unsupported-scheme"),
        pytest.param("x.spec", "unix://relative.sock", id="spec-relative-unix-path"),
        pytest.param("x.json", "{not json", id="json-invalid"),
        pytest.param("x.json", '{"Name": "x"}', id="json-without-addr"),
    ],
)
def test_bad_spec_files_are_invalid_argument(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidArgument) as e:
        read_spec_file("x", str(path))
    assert e.value.reason == "INVALID_PLUGIN_SPEC" and "plugin 'x'" in str(e.value)


@pytest.mark.parametrize(
    "name", ["", "../etc", "a/b", ".hidden", "x" * 129, "sp ace"], ids=lambda n: repr(n)[:12]
)
def test_bad_plugin_names_are_invalid_argument(name):
    with pytest.raises(InvalidArgument, match="invalid plugin name"):
        validate_plugin_name(name)


# --- scope negotiation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caps", "scope"),
    [
        pytest.param({"Scope": "local"}, "local", id="local"),
        pytest.param({"Scope": "global"}, "global", id="global"),
        pytest.param({"Scope": "local", "foo": "bar"}, "local", id="extra-fields-ignored"),
        pytest.param({"Scope": "global", "ConnectivityScope": "local"}, "global", id="newer-field"),
    ],
)
def test_scope_negotiated(caps, scope):
    assert api.negotiate_scope("p", caps) == scope


@pytest.mark.parametrize(
    ("caps", "shown"),
    [
        pytest.param({}, "", id="missing"),
        pytest.param({"Scope": ""}, "", id="empty"),
        pytest.param({"Scope": "swarm"}, "swarm", id="unknown"),
        pytest.param({"Scope": "Global"}, "Global", id="case-sensitive"),
        pytest.param({"Scope": None}, "", id="null"),
        pytest.param({"Scope": ["local"]}, '["local"]', id="list"),
    ],
)
def test_bad_scope_refused_with_libnetworks_reason(caps, shown):
    with pytest.raises(FailedPrecondition) as e:
        api.negotiate_scope("p", caps)
    assert str(e.value) == f"invalid capability: expecting 'local' or 'global', got {shown}"
    assert e.value.reason == "INVALID_CAPABILITY"


# --- requests ----------------------------------------------------------------------------------


def test_create_network_body():
    spec = NetworkSpec(
        network_id=NID,
        name="n",
        driver="p",
        options={"k": "v"},
        ipv4=(IpamData(pool="10.0.0.0/24", gateway="10.0.0.1/24", address_space="LocalDefault"),),
        internal=True,
    )
    assert api.create_network(spec) == {
        "NetworkID": NID,
        "Options": {
            "com.docker.network.generic": {"k": "v"},
            "com.docker.network.enable_ipv6": False,
            "com.docker.network.internal": True,
        },
        "IPv4Data": [
            {
                "AddressSpace": "LocalDefault",
                "Pool": "10.0.0.0/24",
                "Gateway": "10.0.0.1/24",
                "AuxAddresses": {},
            }
        ],
        "IPv6Data": None,
    }


def test_create_endpoint_body_with_ports():
    spec = EndpointSpec(
        network_id=NID,
        endpoint_id=EID,
        address="10.0.0.2/24",
        options={"o": "1"},
        port_bindings=(PortBinding(protocol="udp", host_port=53, container_port=5353),),
        exposed_ports=(ExposedPort(protocol="tcp", port=80),),
    )
    assert api.create_endpoint(spec, "02:42:0a:00:00:02") == {
        "NetworkID": NID,
        "EndpointID": EID,
        "Options": {
            "o": "1",
            "com.docker.network.portmap": [
                {
                    "Proto": 17,
                    "IP": "10.0.0.2",
                    "Port": 5353,
                    "HostIP": "",
                    "HostPort": 53,
                    "HostPortEnd": 53,
                }
            ],
            "com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}],
        },
        "Interface": {
            "Address": "10.0.0.2/24",
            "AddressIPv6": "",
            "MacAddress": "02:42:0a:00:00:02",
        },
    }


# --- responses ---------------------------------------------------------------------------------

SENT = api.EndpointInterface(address="10.0.0.2/24")


def test_plugin_may_fill_what_was_not_given():
    got = api.endpoint_interface(
        "p", {"Interface": {"MacAddress": "02:AA:00:00:00:01", "AddressIPv6": "fd00::2/64"}}, SENT
    )
    assert got == api.EndpointInterface("10.0.0.2/24", "fd00::2/64", "02:aa:00:00:00:01")
    # An echo of what was given is no change.
    assert api.endpoint_interface("p", {"Interface": {"Address": "10.0.0.2/24"}}, SENT) == SENT
    assert api.endpoint_interface("p", {}, SENT) == SENT


@pytest.mark.parametrize(
    ("iface", "words"),
    [
        pytest.param({"Address": "10.0.0.9/24"}, "driver modified interface address", id="changed"),
        pytest.param({"MacAddress": "zz"}, "not a MAC address", id="bad-mac"),
        pytest.param({"AddressIPv6": "10.0.0.3/24"}, "not an IPv6 CIDR", id="v4-as-v6"),
        pytest.param("eth0", "not an object", id="not-object"),
    ],
)
def test_bad_interface_answers(iface, words):
    with pytest.raises(FailedPrecondition, match=words):
        api.endpoint_interface("p", {"Interface": iface}, SENT)


def test_join_reply_parsed():
    reply = api.join_reply(
        "p",
        {
            "InterfaceName": {"SrcName": "veth1", "DstPrefix": "eth"},
            "Gateway": "10.0.0.1",
            "GatewayIPv6": "fd00::1",
            "StaticRoutes": [
                {"Destination": "192.0.2.0/24", "RouteType": 1},
                {"Destination": "198.51.100.0/24", "RouteType": 0, "NextHop": "10.0.0.254"},
            ],
            "DisableGatewayService": True,
        },
    )
    assert reply == api.JoinReply(
        "veth1",
        "eth",
        "10.0.0.1",
        "fd00::1",
        (StaticRoute("192.0.2.0/24"), StaticRoute("198.51.100.0/24", "10.0.0.254")),
    )
    assert api.join_reply("p", {}) == api.JoinReply()


@pytest.mark.parametrize(
    ("resp", "words"),
    [
        pytest.param({"InterfaceName": {"SrcName": ""}}, "SrcName", id="empty-src"),
        pytest.param({"InterfaceName": {"SrcName": "a" * 16}}, "SrcName", id="long-src"),
        pytest.param({"InterfaceName": {"SrcName": "v", "DstPrefix": "e/"}}, "DstPrefix", id="pfx"),
        pytest.param({"Gateway": "nope"}, 'unable to parse Gateway "nope"', id="bad-gateway"),
        pytest.param({"GatewayIPv6": "10.0.0.1"}, "not an IPv6", id="v4-gateway6"),
        pytest.param({"StaticRoutes": [{"Destination": "x"}]}, "not a CIDR", id="route-dest"),
        pytest.param(
            {"StaticRoutes": [{"Destination": "1.2.3.0/24", "RouteType": 0}]},
            "NextHop",
            id="nexthop-missing",
        ),
        pytest.param(
            {"StaticRoutes": [{"Destination": "1.2.3.0/24", "RouteType": 1}]},
            "without an interface",
            id="connected-without-interface",
        ),
        pytest.param(
            {"StaticRoutes": [{"Destination": "1.2.3.0/24", "RouteType": 7}]},
            "unknown RouteType",
            id="route-type",
        ),
    ],
)
def test_bad_join_answers(resp, words):
    with pytest.raises(FailedPrecondition, match=words) as e:
        api.join_reply("p", resp)
    assert e.value.reason == "PLUGIN_BAD_RESPONSE"


def test_oper_info_values_as_strings():
    value = api.oper_value("p", {"Value": {"a": "x", "n": 1, "l": [1, 2], "m": {"k": True}}})
    assert value == {"a": "x", "n": "1", "l": "[1, 2]", "m": '{"k": true}'}
    with pytest.raises(FailedPrecondition, match="Value is not an object"):
        api.oper_value("p", {"Value": 3})
