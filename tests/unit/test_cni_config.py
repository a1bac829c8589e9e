"""cnm-cni's pure parts: configuration parsing and result building."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clients.cni import commands, config, errors, result
from clients.cni.errors import CniError

GOOD = {"cniVersion": "1.1.0", "name": "pods", "type": "cnm"}


def test_defaults_network_to_the_cni_name_and_controller_to_the_env():
    conf = config.netconf(GOOD, "ADD", {"CNM_CONTROLLER": "unix:///tmp/c.sock"})
    assert conf.network == "pods"
    assert conf.controller == "unix:///tmp/c.sock"
    assert conf.port_mappings == ()


def test_port_mappings_are_parsed_and_deduplicated():
    runtime = {
        "portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "TCP"},
            {"hostPort": 8080, "containerPort": 80},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
        ]
    }
    conf = config.netconf(dict(GOOD, runtimeConfig=runtime), "ADD", {})
    assert [str(p) for p in conf.port_mappings] == ["8080:80/tcp", "127.0.0.1:5353:53/udp"]


@pytest.mark.parametrize(
    ("doc", "command", "code"),
    [
        pytest.param(dict(GOOD, cniVersion="0.2.0"), "ADD", 1, id="old-version"),
        pytest.param(dict(GOOD, cniVersion="1.0.0"), "STATUS", 1, id="status-before-1.1"),
        pytest.param(dict(GOOD, cniVersion="0.3.1"), "CHECK", 1, id="check-before-0.4"),
        pytest.param({k: v for k, v in GOOD.items() if k != "cniVersion"}, "ADD", 7, id="no-ver"),
        pytest.param(dict(GOOD, name="-bad"), "ADD", 7, id="bad-name"),
        pytest.param(dict(GOOD, network=7), "ADD", 7, id="network-not-string"),
        pytest.param(dict(GOOD, ipam={}), "ADD", 2, id="ipam-section"),
        pytest.param(dict(GOOD, controller="unix://relative"), "ADD", 7, id="bad-controller"),
        pytest.param(dict(GOOD, runtimeConfig=[]), "ADD", 7, id="runtime-config-not-object"),
        pytest.param(dict(GOOD, prevResult=[]), "ADD", 7, id="prev-result-not-object"),
        pytest.param(dict(GOOD, defaultRoute="no"), "ADD", 7, id="default-route-not-bool"),
        pytest.param(
            dict(GOOD, runtimeConfig={"portMappings": [{"hostPort": True, "containerPort": 80}]}),
            "ADD", 7, id="port-bool",
        ),
        pytest.param(
            dict(GOOD, runtimeConfig={"portMappings": [{"hostPort": 1, "containerPort": 70000}]}),
            "ADD", 7, id="port-range",
        ),
        pytest.param(
            dict(GOOD, runtimeConfig={"portMappings": [
                {"hostPort": 1, "containerPort": 2, "hostIP": "nope"}]}),
            "ADD", 7, id="port-host-ip",
        ),
        pytest.param(GOOD, "GC", 7, id="gc-without-valid-attachments"),
        pytest.param(dict(GOOD, **{"cni.dev/valid-attachments": [{"containerID": 1}]}), "GC", 7,
                     id="gc-bad-attachment"),
    ],
)  # fmt: skip
def test_bad_configuration(doc, command, code):
    with pytest.raises(CniError) as err:
        config.netconf(doc, command, {})
    assert err.value.code == code


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"CNI_IFNAME": "eth0", "CNI_NETNS": "/n"}, "CNI_CONTAINERID", id="no-cid"),
        pytest.param({"CNI_CONTAINERID": "c", "CNI_NETNS": "/n"}, "CNI_IFNAME", id="no-ifname"),
        pytest.param({"CNI_CONTAINERID": "c", "CNI_IFNAME": ".."}, "CNI_IFNAME", id="dotdot"),
        pytest.param({"CNI_CONTAINERID": "c", "CNI_IFNAME": "a b"}, "CNI_IFNAME", id="space"),
        pytest.param({"CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"}, "CNI_NETNS", id="no-netns"),
        pytest.param(
            {"CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_NETNS": "x"}, "CNI_NETNS",
            id="relative-netns",
        ),
    ],
)  # fmt: skip
def test_bad_environment_names_the_variable(env, variable):
    with pytest.raises(CniError) as err:
        config.attachment(env, netns_required=True)
    assert err.value.code == errors.INVALID_ENVIRONMENT
    assert variable in err.value.msg


def test_del_needs_no_netns():
    att = config.attachment({"CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"}, netns_required=False)
    assert att.netns == ""


def test_sandbox_names_are_valid_and_distinct_per_attachment():
    conf = config.netconf(GOOD, "ADD", {})
    names = {
        commands.sandbox_name(conf, config.Attachment(cid, ifname, "/n"))
        for cid in ("a.b", "a_b", "x" * 200)
        for ifname in ("eth0", "net1")
    }
    assert len(names) == 6
    assert all(len(n) <= 64 and n.replace("-", "").replace("_", "").isalnum() for n in names)


ENDPOINT = SimpleNamespace(
    mac_address="02:42:0a:00:00:02",
    ipv4_address="10.0.0.2/24",
    gateway="10.0.0.1",
    ipv6_address="fd00::2/64",
    gateway_ipv6="",
    host_interface_name="veth0123",
)


def test_result_appends_to_prev_result_and_indexes_the_new_interface():
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo", "sandbox": "/n"}],
        "ips": [{"address": "127.0.0.1/8", "interface": 0}],
        "dns": {"nameservers": ["10.0.0.53"]},
    }
    out = result.add_result(
        "1.0.0", prev, ifname="eth0", netns="/n", endpoint=ENDPOINT,
        dns={"nameservers": ["10.0.0.53", "9.9.9.9"], "search": ["corp"]},
    )  # fmt: skip
    assert out["interfaces"][1:] == [
        {"name": "veth0123"},
        {"name": "eth0", "sandbox": "/n", "mac": ENDPOINT.mac_address},
    ]
    assert out["ips"][1:] == [
        {"address": "10.0.0.2/24", "interface": 2, "gateway": "10.0.0.1"},
        {"address": "fd00::2/64", "interface": 2},
    ]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
    assert out["dns"] == {"nameservers": ["10.0.0.53", "9.9.9.9"], "search": ["corp"]}
    assert prev["interfaces"] == [{"name": "lo", "sandbox": "/n"}]  # not modified
    assert result.find_interface(out, "eth0", "/n") == 2


def test_results_before_1_0_carry_the_address_version():
    out = result.add_result("0.4.0", None, ifname="eth0", netns="/n", endpoint=ENDPOINT, dns={})
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert "dns" not in out


def test_malformed_prev_result_is_a_decode_error():
    with pytest.raises(CniError) as err:
        result.add_result("1.0.0", {"interfaces": "lo"}, ifname="e", netns="/n",
                          endpoint=ENDPOINT, dns={})  # fmt: skip
    assert err.value.code == errors.DECODE_FAILURE


def test_resolv_conf_is_read_as_dns():
    text = "# cnm\nnameserver 10.1.1.1\nnameserver ::1\nsearch a b\noptions ndots:2 edns0\n"
    assert result.resolv_conf_dns(text) == {
        "nameservers": ["10.1.1.1", "::1"],
        "search": ["a", "b"],
        "options": ["ndots:2", "edns0"],
    }
