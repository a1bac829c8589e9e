"""The conntrack flush a driver crash loses is done at its next start.

A Leave queues the flush of its addresses for a lull (driver_service/conntrack.py);
a kill -9 in that lull loses the queue. The restarted driver sweeps: entries
of addresses inside its networks that no endpoint holds go, the others stay.
The lost flush is modelled exactly: entries added by hand while the driver is
down, for an address nobody holds and for one that an endpoint still holds.
"""

from __future__ import annotations

import pytest
from driver_world import DriverHost, driver_host


@pytest.fixture
def host(spawn, redis_url, netns_prefix):
    with driver_host(spawn, redis_url, netns_prefix, start=False) as h:
        yield h


def _entry(host: DriverHost, src: str, dst: str, sport: int) -> None:
    host.host_exec(
        "conntrack", "-I", "-p", "udp", "-s", src, "-d", dst,
        "--sport", str(sport), "--dport", "53", "-t", "300",
    )  # fmt: skip


def test_restart_after_kill9_deletes_the_entries_of_addresses_nobody_holds(host):
    host.start()
    nid = host.network("10.66.0.0/24")
    host.attach(nid, "10.66.0.2/24", "kept")
    host.kill9()
    _entry(host, "10.66.0.9", "198.51.100.7", 4001)  # left by an endpoint that left
    _entry(host, "10.66.0.2", "198.51.100.7", 4002)  # a live endpoint's flow
    _entry(host, "10.66.0.1", "198.51.100.7", 4003)  # the gateway's
    _entry(host, "10.67.0.9", "198.51.100.7", 4004)  # not in any of the driver's networks
    host.start()
    flows = host.host_exec("conntrack", "-L", "-p", "udp", check=False).stdout
    assert "src=10.66.0.9 " not in flows, flows
    for kept in ("10.66.0.2", "10.66.0.1", "10.67.0.9"):
        assert f"src={kept} " in flows, f"{kept}'s entry must stay: {flows}"
    host.reset()
