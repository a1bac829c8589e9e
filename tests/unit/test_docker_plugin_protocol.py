"""cnm-docker-plugin's pure parts: libnetwork's JSON fields in, answers out."""

from __future__ import annotations

import json

import pytest

from clients.docker_plugin import protocol as p
from clients.docker_plugin.objects import sandbox_name
from clients.docker_plugin.server import answer
from cnm.types.v1 import types_pb2


def test_portmap_as_dockerd_sends_it_becomes_cnm_bindings():
    opts = {
        p.PORT_MAP: [
            {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080},
            {"Proto": 17, "IP": "", "Port": 53, "HostIP": "127.0.0.1", "HostPort": 0,
             "HostPortEnd": 0},
            {"Proto": 6, "Port": 22, "HostPort": 2000, "HostPortEnd": 2010},
        ],
        p.EXPOSED_PORTS: [{"Proto": 6, "Port": 80}],
    }  # fmt: skip
    got = [
        (b.protocol, b.host_ip, b.host_port, b.host_port_end, b.container_port)
        for b in p.port_bindings(opts)
    ]
    assert got == [
        (types_pb2.PROTOCOL_TCP, "", 8080, 0, 80),
        (types_pb2.PROTOCOL_UDP, "127.0.0.1", 0, 0, 53),
        (types_pb2.PROTOCOL_TCP, "", 2000, 2010, 22),
    ]
    assert [(e.protocol, e.port) for e in p.exposed_ports(opts)] == [(types_pb2.PROTOCOL_TCP, 80)]


def test_published_ports_read_back_as_docker_reads_them():
    b = types_pb2.PortBinding(
        protocol=types_pb2.PROTOCOL_UDP, host_port=5353, container_port=53, container_ip="10.0.0.2"
    )
    assert p.port_map_json([b]) == [
        {"Proto": 17, "IP": "10.0.0.2", "Port": 53, "HostIP": "0.0.0.0", "HostPort": 5353,
         "HostPortEnd": 5353}
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        pytest.param({p.PORT_MAP: "80"}, "expected a list", id="not-a-list"),
        pytest.param({p.PORT_MAP: [{"Proto": 99, "Port": 80}]}, "unsupported protocol 99",
                     id="protocol"),
        pytest.param({p.PORT_MAP: [{"Proto": 6, "Port": 70000}]}, "expected a port number",
                     id="port-range"),
        pytest.param({p.PORT_MAP: [{"Proto": 6, "Port": True}]}, "expected a port number",
                     id="bool-port"),
    ],
)  # fmt: skip
def test_bad_portmaps_are_refused(opts, message):
    with pytest.raises(p.PluginError, match=message):
        p.port_bindings(opts)


def test_string_map_takes_what_docker_puts_in_generic_options():
    assert p.string_map({"a": "x", "b": True, "c": 3}, "o") == {"a": "x", "b": "true", "c": "3"}
    with pytest.raises(p.PluginError, match="option 'd' is not a string"):
        p.string_map({"d": {"x": 1}}, "o")


def test_sandbox_names_come_from_the_key_basename():
    assert sandbox_name("/var/run/docker/netns/1ac7a3e9876d") == "docker-1ac7a3e9876d"
    with pytest.raises(p.PluginError):
        sandbox_name("/")


def _boom(req):
    raise RuntimeError("kaput")


@pytest.mark.parametrize(
    ("method", "key"),
    [("NetworkDriver.Join", "Err"), ("IpamDriver.RequestPool", "Error")],
)
def test_errors_use_the_field_libnetwork_reads(method, key):
    table = {method: _boom}
    status, out = answer(table, method, b"{}")
    assert (status, list(out)) == (200, [key])
    assert "kaput" in out[key]
    assert answer(table, method, b"[1]") == (400, {key: "request is not a JSON object"})
    assert answer({}, method, b"{}")[0] == 404


def test_answers_are_json_ready():
    table = {"Plugin.Activate": lambda req: {"Implements": ["NetworkDriver", "IpamDriver"]}}
    status, out = answer(table, "Plugin.Activate", b"")
    assert status == 200
    assert json.loads(json.dumps(out)) == {"Implements": ["NetworkDriver", "IpamDriver"]}
