"""Multi-host Docker networking through cnm: two dockerds on two simulated
hosts share one cnm (one controller, one Redis) and one overlay.

Each host runs `cnm-docker-plugin --cnm-driver overlay` on socket
`cnm-overlay` and its own dockerd (tests/integration/docker_world.py). The
same `docker network create` on both hosts makes one cnm overlay network
(the second daemon's network shares the first's); containers on different
hosts ping each other across the VXLAN underlay.
"""

from __future__ import annotations

import pytest
import redis
from docker_world import DockerWorld

from harness.dockerd import IMAGE

pytestmark = pytest.mark.timeout(300)

CREATE = ("network", "create", "-d", "cnm-overlay", "--ipam-driver", "cnm-overlay",
          "--subnet", "10.210.0.0/24", "ov")  # fmt: skip


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    plugins = {"cnm-overlay": ["--cnm-driver", "overlay"]}
    w = DockerWorld(redis_server, netns_prefix, hosts=2, plugins=plugins).build()
    yield w
    w.close()


def test_containers_on_two_hosts_ping_over_one_cnm_overlay(world):
    d1, d2 = world.docker("h1"), world.docker("h2")
    try:
        d1.out(*CREATE)
        d2.out(*CREATE)
        (net,) = world.cnm.list_networks()
        assert net.driver == "overlay" and net.scope == 2  # SCOPE_GLOBAL
        d1.out("run", "-d", "--name", "x1", "--network", "ov", IMAGE, "sleep", "600")
        d2.out("run", "-d", "--name", "x2", "--network", "ov", IMAGE, "sleep", "600")
        ip1 = d1.out("inspect", "-f", "{{.NetworkSettings.Networks.ov.IPAddress}}", "x1")
        ip2 = d2.out("inspect", "-f", "{{.NetworkSettings.Networks.ov.IPAddress}}", "x2")
        # One pool for both daemons: cnm's IPAM hands out each address once.
        assert ip1 != ip2
        assert {e.ipv4_address for e in world.cnm.list_endpoints()} == {
            f"{ip1}/24",
            f"{ip2}/24",
        }
        assert {e.host for e in world.cnm.list_endpoints()} == {"h1", "h2"}
        for d, c, peer in ((d1, "x1", ip2), (d2, "x2", ip1)):
            assert d.run("exec", c, "ping", "-c1", "-W5", peer, check=False).returncode == 0

        # h1 leaves: the overlay stays for h2's container, and works on.
        d1.out("rm", "-f", "x1")
        d1.out("network", "rm", "ov")
        assert [n.id for n in world.cnm.list_networks()] == [net.id]
        d1.out(*CREATE)
        d1.out("run", "-d", "--name", "x3", "--network", "ov", IMAGE, "sleep", "600")
        ip3 = d1.out("inspect", "-f", "{{.NetworkSettings.Networks.ov.IPAddress}}", "x3")
        assert d2.run("exec", "x2", "ping", "-c1", "-W5", ip3, check=False).returncode == 0
        d1.out("rm", "-f", "x3")
        d1.out("network", "rm", "ov")
        d2.out("rm", "-f", "x2")
        d2.out("network", "rm", "ov")
        assert world.cnm.list_networks() == []
        assert world.cnm.list_endpoints() == []
        assert world.cnm.list_sandboxes() == []
    finally:
        for d, cs in ((d1, ("x1", "x3")), (d2, ("x2",))):
            d.run("rm", "-f", *cs, check=False)
            d.run("network", "rm", "ov", check=False)
