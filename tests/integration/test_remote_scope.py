"""Scope negotiation: a plugin's GetCapabilities "Scope" becomes the scope of
its networks; a missing, empty or unknown scope leaves it unregistered with
libnetwork's reason, shown by ListDrivers and `cnmctl driver ls`. Plugins
that appear (or are fixed) later are picked up by the driver service's rescan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from controller_env import T, ping_all, sandbox_netns
from remote_env import Plugin, remote_world

from cnm.controller.v1 import controller_pb2 as pb
from cnm.types.v1 import types_pb2
from harness.wait import until

C = grpc.StatusCode
REASON = "invalid capability: expecting 'local' or 'global', got "
# name -> the raw GetCapabilities answer of that (otherwise identical) plugin
CAPABILITIES = {
    "gscope": '{"Scope": "global"}',
    "lscope": '{"Scope": "local"}',
    "extra": '{"Scope": "local", "foo": "bar"}',
    "noscope": "{}",
    "emptyscope": '{"Scope": ""}',
    "badscope": '{"Scope": "galactic"}',
    "upper": '{"Scope": "Local"}',
    "numscope": '{"Scope": 5}',
}


@pytest.fixture(scope="module")
def env(redis_server, netns_prefix):
    plugins = [(name, ["--capabilities", caps]) for name, caps in CAPABILITIES.items()]
    plugins.append(("notnet", ["--implements", "IpamDriver"]))
    # A short heartbeat: the plugin rescan runs at the same pace.
    extra = ["--heartbeat-interval", "0.3", "--host-ttl", "5"]
    with remote_world(redis_server, netns_prefix, plugins, driver_args=extra) as world:
        yield world


@pytest.fixture
def c(env):
    return env[0].stub()


def _drivers(c) -> dict[str, tuple[int, str]]:
    resp = c.ListDrivers(pb.ListDriversRequest(), timeout=T)
    return {d.name: (d.scope, d.error) for d in resp.drivers}


def test_driver_list_shows_negotiated_scopes_and_libnetwork_reasons(c):
    drivers = _drivers(c)
    assert drivers["gscope"] == (types_pb2.SCOPE_GLOBAL, "")
    assert drivers["lscope"] == (types_pb2.SCOPE_LOCAL, "")
    assert drivers["extra"] == (types_pb2.SCOPE_LOCAL, "")
    for name, got in [
        ("noscope", ""),
        ("emptyscope", ""),
        ("badscope", "galactic"),
        ("upper", "Local"),
        ("numscope", "5"),
    ]:
        assert drivers[name] == (types_pb2.SCOPE_UNSPECIFIED, f"h1: {REASON}{got}"), name
    # An IPAM-only plugin is no network driver: not listed, not an error.
    assert "notnet" not in drivers


def test_cnmctl_driver_ls_shows_the_reason(env):
    w, _plugins, _dir = env
    res = subprocess.run(
        [str(Path(sys.executable).parent / "cnmctl"), "--controller", w.controller,
         "driver", "ls"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line for line in res.stdout.splitlines()[1:]}
    assert f"{REASON}galactic" in rows["badscope"]
    assert "global" in rows["gscope"] and "h1" in rows["gscope"]


@pytest.mark.parametrize(
    ("driver", "scope", "host"),
    [
        pytest.param("gscope", types_pb2.SCOPE_GLOBAL, "", id="global"),
        pytest.param("lscope", types_pb2.SCOPE_LOCAL, "h1", id="local"),
        pytest.param("extra", types_pb2.SCOPE_LOCAL, "h1", id="local-extra-fields"),
    ],
)
def test_network_scope_follows_the_plugin(env, c, driver, scope, host):
    _w, plugins, _dir = env
    plug = plugins[driver]
    ipam = pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet="10.95.0.0/24")])
    net = c.CreateNetwork(pb.CreateNetworkRequest(name="snet", driver=driver, ipam=ipam), timeout=T)
    try:
        assert (net.scope, net.host) == (scope, host)
        creates = plug.bodies("NetworkDriver.CreateNetwork")
        # Global scope: created on a host lazily, at its first endpoint there.
        assert len(creates) == (0 if scope == types_pb2.SCOPE_GLOBAL else 1)
        sbs = [c.CreateSandbox(pb.CreateSandboxRequest(name=f"s{i}"), timeout=T) for i in (0, 1)]
        eps = [c.Connect(pb.ConnectRequest(network="snet", sandbox=s.name), timeout=T) for s in sbs]
        [create] = plug.bodies("NetworkDriver.CreateNetwork")
        space = "GlobalDefault" if scope == types_pb2.SCOPE_GLOBAL else "LocalDefault"
        assert create["NetworkID"] == net.id and create["IPv4Data"][0]["AddressSpace"] == space
        assert ping_all(sandbox_netns(sbs[0]), [eps[1].ipv4_address.split("/")[0]]) == []
    finally:
        for name in ("s0", "s1"):
            try:
                c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name=name), timeout=T)
            except grpc.RpcError as e:
                assert e.code() == C.NOT_FOUND
        c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name="snet"), timeout=T)
    assert plug.bodies("NetworkDriver.DeleteNetwork")[-1] == {"NetworkID": net.id}


@pytest.mark.parametrize("driver", ["noscope", "emptyscope", "badscope", "upper"])
def test_unregistered_plugin_refuses_networks_and_is_not_called(env, c, driver):
    _w, plugins, _dir = env
    with pytest.raises(grpc.RpcError) as e:
        c.CreateNetwork(pb.CreateNetworkRequest(name="unet", driver=driver), timeout=T)
    assert e.value.code() == C.FAILED_PRECONDITION
    assert f"driver {driver!r} is not usable" in e.value.details()
    assert REASON in e.value.details()
    assert c.ListNetworks(pb.ListNetworksRequest(), timeout=T).networks == []
    assert plugins[driver].methods() == ["Plugin.Activate", "NetworkDriver.GetCapabilities"]


def test_rescan_registers_a_new_plugin_and_a_fixed_one(env, c):
    w, plugins, plugin_dir = env
    host_ns = w.hosts["h1"].netns
    late = Plugin(
        w.spawn, plugin_dir, "latecomer", host_ns, "--capabilities", '{"Scope":"global"}'
    ).start()
    fixed = plugins["numscope"]
    try:
        until(
            lambda: _drivers(c).get("latecomer") == (types_pb2.SCOPE_GLOBAL, ""),
            "latecomer registered",
            timeout=10,
        )
        # A plugin answering a bad scope, restarted with a good one (its socket is new).
        fixed.kill()
        fixed.args = ["--capabilities", '{"Scope": "local"}']
        fixed.start()
        until(
            lambda: _drivers(c).get("numscope") == (types_pb2.SCOPE_LOCAL, ""),
            "numscope re-negotiated",
            timeout=10,
        )
    finally:
        # Processes started by a test end with it (the leftover guard checks).
        w.spawn.stop(late.proc)
        w.spawn.stop(fixed.proc)
