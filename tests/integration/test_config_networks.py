"""Configuration networks (Docker's `network create --config-only` / `--config-from`)
against a real stack: a config-only network holds configuration and makes
nothing; a network created from it takes that configuration; each refusal has
its exact code and reason and changes nothing, in Redis or on the host."""

from __future__ import annotations

import json

import pytest
from controller_env import kernel_view, snapshot

from clients.client import Client
from clients.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from cnm.types.v1 import types_pb2
from harness import kernel_snapshot, stack
from harness.netns import exec_in
from harness.wait import until
from harness.world import FAST_FAILOVER, World

T = 15.0
CNMCTL = str(stack.BIN / "cnmctl")
SUBNET = "10.81.0.0/24"


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    """One host "h1"; a config-only network "cfg" (subnet, gateway, a bridge
    option, a label), a bridge network "fromcfg" made from it, a sandbox."""
    import redis

    from conftest import Spawner

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    w = World(
        Spawner(), redis_server, netns_prefix, tmp_prefix="cnmcfg", controller_env=FAST_FAILOVER
    )
    c = None
    try:
        w.add_host("h1", start=False).build()
        host_ns = w.hosts["h1"].netns
        c = Client(w.controller, timeout=T)
        c.create_network(
            "cfg",
            config_only=True,
            subnets=[types_pb2.IpamConfig(subnet=SUBNET, gateway="10.81.0.254")],
            options={"com.docker.network.bridge.name": "brcfg0"},
            labels={"site": "a"},
        )
        c.create_network("fromcfg", config_from="cfg")
        c.create_sandbox("refusebox", host="h1")
        yield w, c, host_ns
    finally:
        if c is not None:
            c.close()
        w.close()


def test_config_only_network_is_a_record_that_makes_nothing(world):
    w, c, host_ns = world
    cfg = c.get_network("cfg")
    assert cfg.config_only and not cfg.config_from
    assert (cfg.driver, cfg.host, cfg.scope) == ("null", "", types_pb2.SCOPE_LOCAL)
    assert [(x.subnet, x.gateway) for x in cfg.ipam.configs] == [(SUBNET, "10.81.0.254")]
    assert dict(cfg.options) == {"com.docker.network.bridge.name": "brcfg0"}
    # Its subnet is not allocated by it: the one pool of SUBNET is fromcfg's.
    fromcfg = c.get_network("fromcfg")
    owners = [p.owner for p in c.list_pools() if p.pool == SUBNET]
    assert owners == [fromcfg.id]


def test_network_from_config_takes_its_configuration_and_works(world):
    w, c, host_ns = world
    net = c.get_network("fromcfg")
    assert net.config_from == "cfg" and not net.config_only
    assert (net.driver, net.host) == ("bridge", "h1")
    assert [(x.subnet, x.gateway) for x in net.ipam.configs] == [(SUBNET, "10.81.0.254")]
    assert dict(net.labels) == {"site": "a"}
    assert "brcfg0" in kernel_view([host_ns], "")[host_ns]
    sb = c.create_sandbox("cfgbox", host="h1")
    try:
        ep = c.connect("fromcfg", "cfgbox")
        assert ep.ipv4_address.startswith("10.81.0.")
        key = sb.key.rsplit("/", 1)[1]
        route = exec_in(key, "ip", "-4", "route", "show", "default").stdout
        assert "via 10.81.0.254" in route
    finally:
        c.delete_sandbox("cfgbox")
        driver_idle(w)


def driver_idle(w: World) -> None:
    """Waits for the driver's background helpers (the conntrack flush after a
    leave) to exit: the module's world outlives the test's leftover check."""
    pid = w.hosts["h1"].proc.pid
    until(lambda: not kernel_snapshot._children(pid), "driver helpers done", timeout=15)


def _refused(call, error, reason: str, words: str) -> None:
    with pytest.raises(error) as err:
        call()
    assert err.value.reason == reason, err.value
    assert words in err.value.message, err.value.message


CASES = [
    pytest.param(
        lambda c: c.create_network("x", config_only=True, internal=True),
        InvalidArgumentError,
        "CONFIG_ONLY_FIELD",
        "Network operator fields",
        id="config-only-internal",
    ),
    pytest.param(
        lambda c: c.create_network("x", config_only=True, host="h1"),
        InvalidArgumentError,
        "CONFIG_ONLY_FIELD",
        "Network operator fields",
        id="config-only-host",
    ),
    pytest.param(
        lambda c: c.create_network("x", config_only=True, config_from="cfg"),
        InvalidArgumentError,
        "CONFIG_ONLY_FIELD",
        "cannot depend on another configuration network",
        id="config-only-from-config",
    ),
    pytest.param(
        lambda c: c.create_network(
            "x", config_only=True, subnets=[types_pb2.IpamConfig(subnet="10.82.0.1/24")]
        ),
        InvalidArgumentError,
        "INVALID_SUBNET",
        "10.82.0.1/24",
        id="config-only-bad-subnet",
    ),
    pytest.param(
        lambda c: c.create_network(
            "x", config_from="cfg", subnets=[types_pb2.IpamConfig(subnet="10.82.0.0/24")]
        ),
        InvalidArgumentError,
        "CONFIG_FROM_FIELD",
        "user specified configurations are not supported",
        id="config-from-with-subnet",
    ),
    pytest.param(
        lambda c: c.create_network("x", config_from="cfg", labels={"a": "b"}),
        InvalidArgumentError,
        "CONFIG_FROM_FIELD",
        "user specified configurations",
        id="config-from-with-label",
    ),
    pytest.param(
        lambda c: c.create_network("x", config_from="cfg", enable_ipv6=True),
        InvalidArgumentError,
        "CONFIG_FROM_FIELD",
        "user specified configurations",
        id="config-from-with-ipv6",
    ),
    pytest.param(
        lambda c: c.create_network("x", config_from="cfg", options={"k": "v"}),
        InvalidArgumentError,
        "CONFIG_FROM_FIELD",
        "network driver options are not supported",
        id="config-from-with-option",
    ),
    pytest.param(
        lambda c: c.create_network("x", config_from="ghost"),
        NotFoundError,
        "CONFIG_NETWORK_NOT_FOUND",
        "configuration network 'ghost' does not exist",
        id="config-from-unknown",
    ),
    pytest.param(
        lambda c: c.create_network("x", config_from="fromcfg"),
        NotFoundError,
        "CONFIG_NETWORK_NOT_FOUND",
        "'fromcfg'",
        id="config-from-not-a-config-network",
    ),
    pytest.param(
        lambda c: c.create_network("x", config_from=c.get_network("cfg").id),
        NotFoundError,
        "CONFIG_NETWORK_NOT_FOUND",
        "does not exist",
        id="config-from-by-id",
    ),
    pytest.param(
        lambda c: c.delete_network("cfg"),
        FailedPreconditionError,
        "CONFIG_NETWORK_IN_USE",
        "configuration network 'cfg' is in use (by fromcfg)",
        id="delete-config-in-use",
    ),
    pytest.param(
        lambda c: c.create_endpoint("cfg", name="e"),
        FailedPreconditionError,
        "CONFIG_ONLY_NETWORK",
        "cannot create endpoint on configuration-only network 'cfg'",
        id="endpoint-on-config-only",
    ),
    pytest.param(
        lambda c: c.connect("cfg", "refusebox"),
        FailedPreconditionError,
        "CONFIG_ONLY_NETWORK",
        "configuration-only network",
        id="connect-to-config-only",
    ),
]


@pytest.mark.parametrize(("call", "error", "reason", "words"), CASES)
def test_refusal_has_its_code_and_changes_nothing(world, call, error, reason, words):
    w, c, host_ns = world
    before = (snapshot(w.redis_url), kernel_view([host_ns], kernel_snapshot.TEST_TAG))
    _refused(lambda: call(c), error, reason, words)
    after = (snapshot(w.redis_url), kernel_view([host_ns], kernel_snapshot.TEST_TAG))
    assert after == before


def test_cnmctl_create_and_inspect_show_config_fields(world):
    import subprocess

    w, c, host_ns = world
    addr = w.controllers["controller"]

    def cnmctl(*argv: str) -> dict:
        res = subprocess.run(
            [CNMCTL, "--controller", addr, *argv], capture_output=True, text=True, timeout=30
        )
        assert res.returncode == 0, res.stderr
        return res.stdout

    cnmctl("network", "create", "--config-only", "--subnet", "10.83.0.0/24", "cfg2")
    try:
        cnmctl("network", "create", "--config-from", "cfg2", "--host", "h1", "from2")
        try:
            cfg2, from2 = json.loads(cnmctl("network", "inspect", "cfg2", "from2"))
            assert (cfg2["ConfigOnly"], cfg2["ConfigFrom"]) == (True, {"Network": ""})
            assert cfg2["IPAM"]["Config"][0]["Subnet"] == "10.83.0.0/24"
            assert (from2["ConfigOnly"], from2["ConfigFrom"]) == (False, {"Network": "cfg2"})
            assert from2["IPAM"]["Config"][0]["Subnet"] == "10.83.0.0/24"
        finally:
            cnmctl("network", "rm", "from2")
    finally:
        cnmctl("network", "rm", "cfg2")
    # Once its dependent is gone, a config network goes like any other.
    assert "cfg2" not in {n.name for n in c.list_networks()}
