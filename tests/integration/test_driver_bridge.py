"""Bridge driver end to end: a real cnm-driver in a namespace host, real sandboxes, real pings."""

from __future__ import annotations

from pathlib import Path

import pytest
from driver_world import DriverHost, default_routes, links, netns_name, ping


@pytest.fixture
def host(spawn, redis_url, netns_host, netns_prefix):
    h = DriverHost(spawn, redis_url, netns_host, netns_prefix).start()
    try:
        yield h
    finally:
        h.close()


def test_two_sandboxes_on_one_bridge_ping_both_ways_ipv4_and_ipv6(host):
    nid = host.network("10.20.0.0/24", subnet6="fd00:20::/64", name="front")
    a, _ = host.attach(nid, "10.20.0.2/24", "alpha", address6="fd00:20::2/64")
    b, _ = host.attach(nid, "10.20.0.3/24", "beta", address6="fd00:20::3/64")

    assert ping(a, "10.20.0.3") and ping(b, "10.20.0.2")
    assert ping(a, "fd00:20::3") and ping(b, "fd00:20::2")

    hosts_a = Path(a.hosts_path).read_text()
    hosts_b = Path(b.hosts_path).read_text()
    assert "10.20.0.3\tbeta beta.front" in hosts_a
    assert "fd00:20::3\tbeta beta.front" in hosts_a
    assert "10.20.0.2\talpha alpha.front" in hosts_b
    assert hosts_a.splitlines()[1] == "10.20.0.2\talpha"
    assert "eth0" in links(netns_name(a))
    assert len(default_routes(a)) == 1
