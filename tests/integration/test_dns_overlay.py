"""Embedded DNS across hosts: two overlay hosts of the cluster harness, a resolver
(cnm-dns) in each host's namespace beside its driver. A name joined on host B
is answered to a sandbox on host A; an alias disconnected on B disappears on A.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dns_env import RESOLVER_DOWN, answers, ask, getent, rcode_is, values

from clients.client import Client, IpamConfig
from harness import kernel_snapshot, stack, world
from harness.wait import until

pytestmark = [pytest.mark.integration, pytest.mark.netns]


@pytest.fixture
def cluster(spawn, redis_url, netns_prefix):
    c = world.cluster(
        spawn, redis_url, name=f"cnmd-{kernel_snapshot.TEST_TAG}", netns_prefix=netns_prefix,
        hosts=2,
    )  # fmt: skip
    try:
        resolv = Path(c.run_dir) / "resolv.conf"
        resolv.write_text("# no upstream\n")
        for host in c.hosts.values():
            stack.start_dns(
                spawn, redis_url, c.run_dir, host_id=host.id, netns_name=host.netns,
                env={"CNM_HOST_RESOLV_CONF": str(resolv)},
            )  # fmt: skip
        yield c
    finally:
        c.close()


def test_a_name_joined_on_host_b_resolves_on_host_a_and_goes_with_disconnect(cluster):
    with Client(cluster.controller, timeout=20) as c:
        c.create_network("ov", driver="overlay", subnets=[IpamConfig(subnet="10.77.0.0/24")])
        a = c.create_sandbox("a", host="h1")
        ep_a = c.connect("ov", "a")
        b = c.create_sandbox("b", host="h2")
        assert until(
            answers(a.key, "a"),
            "a's own name on h1",
            timeout=15.0,
            retry_on=RESOLVER_DOWN,
        ) == [ep_a.ipv4_address.split("/")[0]]

        ep_b = c.connect("ov", "b", aliases=["api"])
        joined = time.monotonic()
        got = until(
            answers(a.key, "api"),
            "api (on h2) from a (on h1)",
            timeout=15.0,
            interval=0.01,
            retry_on=RESOLVER_DOWN,
        )
        took = time.monotonic() - joined
        print(f"name on host B answered on host A {took * 1000:.0f} ms after Connect returned")
        b_ip = ep_b.ipv4_address.split("/")[0]
        assert got == [b_ip]
        assert values(ask(a.key, "b.ov")) == [b_ip]
        # And the other way, through h2's resolver; and libc's path on h1.
        assert until(answers(b.key, "a"), "a from b", timeout=15.0, retry_on=RESOLVER_DOWN) == [
            ep_a.ipv4_address.split("/")[0]
        ]
        res = getent(cluster.controller, "a", "hosts", "b")
        assert res.returncode == 0 and res.stdout.split()[0] == b_ip, res.stdout + res.stderr

        c.disconnect("ov", "b")
        until(
            rcode_is(a.key, "api", "NXDOMAIN"),
            "api gone on h1 after disconnect on h2",
            timeout=15.0,
            retry_on=RESOLVER_DOWN,
        )
        assert values(ask(a.key, "a")) == [ep_a.ipv4_address.split("/")[0]]
