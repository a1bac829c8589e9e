"""Embedded DNS on one host: real queries from inside sandboxes to cnm-dns.

One world per test: Redis, IPAM and the controller in the root namespace; the
driver service AND the resolver inside a fresh "host" namespace (as cnmd runs
them side by side). Queries go from sockets made inside the sandboxes'
namespaces to 127.0.0.11, or through `cnmctl sandbox exec ... getent`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dns_env import RESOLVER_DOWN, answers, ask, getent, rcode, rcode_is, values

from clients.client import Client, IpamConfig
from clients.errors import ClientError
from harness import stack
from harness.wait import until
from harness.world import single_host

pytestmark = [pytest.mark.integration, pytest.mark.netns]

HOST = "h1"
FAKE_UPSTREAM = Path(__file__).with_name("fake_upstream.py")


def dns_env(run_dir: Path) -> dict[str, str]:
    return {"CNM_HOST_RESOLV_CONF": str(run_dir / "resolv.conf")}


@dataclass
class World:
    spawn: object
    redis_url: str
    run_dir: Path
    netns: str
    controller: str
    client: Client
    dns: subprocess.Popen

    def restart_dns(self, sig: int = signal.SIGKILL) -> None:
        self.spawn.stop(self.dns, sig)
        _addr, self.dns = stack.start_dns(
            self.spawn, self.redis_url, self.run_dir, host_id=HOST, netns_name=self.netns,
            env=dns_env(self.run_dir),
        )  # fmt: skip

    def sandbox(self, name: str, **kw):
        return self.client.create_sandbox(name, host=HOST, **kw)


@pytest.fixture
def world(redis_url, netns_host, netns_prefix, spawn) -> Iterator[World]:
    with single_host(
        spawn, redis_url, netns_host, netns_prefix, host_id=HOST, tmp_prefix="cnmdns"
    ) as st:
        _addr, dns = stack.start_dns(
            spawn, redis_url, st.run_dir, host_id=HOST, netns_name=netns_host
        )
        with Client(st.controller, timeout=20) as client:
            yield World(spawn, redis_url, st.run_dir, netns_host, st.controller, client, dns)


def ip(ep, v6: bool = False) -> str:
    return (ep.ipv6_address if v6 else ep.ipv4_address).split("/")[0]


def test_names_aliases_name_network_aaaa_ptr_round_robin_and_the_files(world):
    c = world.client
    c.create_network(
        "front",
        enable_ipv6=True,
        subnets=[IpamConfig(subnet="10.71.0.0/24"), IpamConfig(subnet="fd00:71::/64")],
    )
    a = world.sandbox("a", extra_hosts=[("db.example", "10.99.0.9")])
    ep_a = c.connect("front", "a")
    b, c_ = world.sandbox("b"), world.sandbox("c")
    ep_b = c.connect("front", "b", aliases=["api"])
    ep_c = c.connect("front", "c", aliases=["api"])

    # libc's path: the sandbox's resolv.conf (127.0.0.11) bind-mounted by sandbox exec.
    res = until(
        lambda: (r := getent(world.controller, "a", "hosts", "b")).returncode == 0 and r,
        "getent hosts b from a",
        timeout=15.0,
        retry_on=RESOLVER_DOWN,
    )
    assert res.stdout.split()[0] in (ip(ep_b), ip(ep_b, True)), res.stdout
    res = getent(world.controller, "a", "ahostsv4", "api")
    assert {ln.split()[0] for ln in res.stdout.splitlines()} == {ip(ep_b), ip(ep_c)}, res.stdout

    # The resolver's answers, asked directly (UDP and TCP).
    reply = ask(a.key, "b.front")
    assert values(reply) == [ip(ep_b)] and reply.header.aa == 1
    assert all(rr.ttl == 600 for rr in reply.rr)
    assert values(ask(a.key, "B.FRONT.", tcp=True)) == [ip(ep_b)]
    assert values(ask(a.key, "b", "AAAA"), "AAAA") == [ip(ep_b, True)]
    assert values(ask(a.key, "c", "AAAA", tcp=True), "AAAA") == [ip(ep_c, True)]
    ptr = ".".join(reversed(ip(ep_b).split("."))) + ".in-addr.arpa"
    assert values(ask(a.key, ptr, "PTR"), "PTR") == ["b.front."]
    # A name with no record of the asked type: NOERROR and no answer (not NXDOMAIN).
    reply = ask(a.key, "b", "MX")
    assert rcode(reply) == "NOERROR" and not reply.rr
    # Round robin: both endpoints of the shared alias in every answer, rotated.
    firsts = set()
    for _ in range(4):
        got = values(ask(a.key, "api"))
        assert sorted(got) == sorted([ip(ep_b), ip(ep_c)])
        firsts.add(got[0])
    assert firsts == {ip(ep_b), ip(ep_c)}
    # Its own name, through its own sandbox's socket too.
    assert values(ask(b.key, "a")) == [ip(ep_a)]

    # The files: the hosts file keeps localhost, itself and --add-host only.
    hosts = Path(a.hosts_path).read_text()
    assert "localhost" in hosts and f"{ip(ep_a)}\ta" in hosts
    assert "10.99.0.9\tdb.example" in hosts
    assert ip(ep_b) not in hosts and ip(ep_c) not in hosts
    resolv = Path(a.resolv_conf_path).read_text().splitlines()
    assert [ln for ln in resolv if ln.startswith("nameserver")] == ["nameserver 127.0.0.11"]
    assert any(ln.startswith("options") and "ndots:0" in ln for ln in resolv), resolv
    assert any(ln.startswith("# ExtServers: [") for ln in resolv), resolv
    assert c_.name == "c"


def test_scope_internal_networks_nxdomain_servfail_and_an_alias_gone_on_disconnect(world):
    c = world.client
    c.create_network("front", subnets=[IpamConfig(subnet="10.72.0.0/24")])
    c.create_network("vault", internal=True, subnets=[IpamConfig(subnet="10.73.0.0/24")])
    x, y, z = world.sandbox("x"), world.sandbox("y"), world.sandbox("z")
    ep_xv = c.connect("vault", "x")
    ep_yf = c.connect("front", "y")
    ep_zf = c.connect("front", "z")
    ep_zv = c.connect("vault", "z", aliases=["db"])

    # z is on both networks: from y (front) only its front address; from x (vault)
    # only its vault address and its vault alias.
    assert until(answers(y.key, "z"), "z from y", timeout=15.0, retry_on=RESOLVER_DOWN) == [
        ip(ep_zf)
    ]
    assert until(answers(x.key, "db"), "db from x", timeout=15.0, retry_on=RESOLVER_DOWN) == [
        ip(ep_zv)
    ]
    assert values(ask(x.key, "z")) == [ip(ep_zv)]
    assert values(ask(z.key, "y")) == [ip(ep_yf)] and values(ask(z.key, "x")) == [ip(ep_xv)]
    # The internal network's names are invisible from front, and front's from vault.
    for key, name in ((y.key, "x"), (y.key, "db"), (x.key, "y")):
        assert rcode(ask(key, name)) == "NXDOMAIN", name
    # `name.vault` is outside y's scope: not answered, forwarded (no upstream here: SERVFAIL).
    reply = ask(y.key, "db.vault")
    assert not reply.rr and rcode(reply) == "SERVFAIL"
    # Unknown names in scope: NXDOMAIN; a PTR inside a shared subnet with no owner too.
    assert rcode(ask(y.key, "ghost")) == "NXDOMAIN"
    assert rcode(ask(y.key, "ghost.front")) == "NXDOMAIN"
    assert rcode(ask(y.key, "200.0.72.10.in-addr.arpa", "PTR")) == "NXDOMAIN"
    # A sandbox only on internal networks has no way out: nothing is forwarded.
    assert rcode(ask(x.key, "www.example.test")) == "SERVFAIL"

    c.disconnect("vault", "z")
    until(
        rcode_is(x.key, "db", "NXDOMAIN"),
        "alias db gone after disconnect",
        timeout=15.0,
        retry_on=RESOLVER_DOWN,
    )
    assert rcode(ask(x.key, "z")) == "NXDOMAIN"
    assert values(ask(y.key, "z")) == [ip(ep_zf)]


def test_other_names_are_forwarded_upstream_and_a_dead_upstream_is_servfail(world):
    c = world.client
    c.create_network("front", subnets=[IpamConfig(subnet="10.74.0.0/24")])
    up = world.sandbox("up")
    upstream_ip = ip(c.connect("front", "up"))
    # The fake upstream runs inside the "up" sandbox's namespace (made by this test).
    server = world.spawn(
        ["nsenter", f"--net={up.key}", "--", sys.executable, str(FAKE_UPSTREAM),
         upstream_ip, "192.0.2.99"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout.readline().strip() == "ready"
    client = world.sandbox("client", dns_servers=[upstream_ip], dns_search=["front"])
    c.connect("front", "client")
    resolv = Path(client.resolv_conf_path).read_text()
    assert f"# ExtServers: [{upstream_ip}]" in resolv and "search front" in resolv

    reply = until(
        lambda: (r := ask(client.key, "www.example.test")).rr and r,
        "forwarded",
        timeout=15.0,
        retry_on=RESOLVER_DOWN,
    )
    assert values(reply) == ["192.0.2.99"] and reply.rr[0].ttl == 30  # the upstream's own TTL
    # libc's path: a name cnm does not own, through the sandbox's resolv.conf.
    res = getent(world.controller, "client", "ahostsv4", "www.example.test")
    assert res.stdout.split()[0] == "192.0.2.99", res.stdout + res.stderr
    # Owned names never go upstream.
    assert values(ask(client.key, "up")) == [upstream_ip]

    world.spawn.stop(server, signal.SIGKILL)
    assert rcode(ask(client.key, "www.example.test", timeout=10)) == "SERVFAIL"


def test_a_killed_resolver_restarted_answers_again_without_a_controller_call(world):
    c = world.client
    c.create_network("front", subnets=[IpamConfig(subnet="10.75.0.0/24")])
    a, _b = world.sandbox("a"), world.sandbox("b")
    c.connect("front", "a")
    ep_b = c.connect("front", "b", aliases=["web"])
    assert until(
        answers(a.key, "web"),
        "web before the restart",
        timeout=15.0,
        retry_on=RESOLVER_DOWN,
    ) == [ip(ep_b)]

    world.restart_dns(signal.SIGKILL)
    assert until(
        answers(a.key, "web"),
        "web after the restart",
        timeout=15.0,
        retry_on=RESOLVER_DOWN,
    ) == [ip(ep_b)]
    assert values(ask(a.key, "b.front", tcp=True)) == [ip(ep_b)]


def test_legacy_hosts_option_keeps_peers_in_every_hosts_file_and_is_validated(world):
    c = world.client
    c.create_network(
        "old",
        subnets=[IpamConfig(subnet="10.76.0.0/24")],
        options={"cnm.network.legacy_hosts": "true"},
    )
    a, _b = world.sandbox("a"), world.sandbox("b")
    c.connect("old", "a")
    ep_b = c.connect("old", "b", aliases=["api"])
    until(
        lambda: f"{ip(ep_b)}\tb b.old api" in Path(a.hosts_path).read_text(),
        "b in a's hosts",
        timeout=15.0,
        retry_on=RESOLVER_DOWN,
    )
    # DNS answers on such a network too.
    assert until(answers(a.key, "api"), "api", timeout=15.0, retry_on=RESOLVER_DOWN) == [ip(ep_b)]

    with pytest.raises(ClientError) as e:
        c.create_network("bad", options={"cnm.network.legacy_hosts": "maybe"})
    assert e.value.code.name == "INVALID_ARGUMENT" and "cnm.network.legacy_hosts" in str(e.value)
    assert [n.name for n in c.list_networks()] == ["old"]
