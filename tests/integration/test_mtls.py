"""Mutual TLS on every TCP listener (README, "Security model").

The three services run inside a fresh namespace (the `netns_host` fixture) on
its loopback, TCP with certificates made by scripts/make-certs.sh (a
harness.world World with `tls`); the controller reaches IPAM and the driver
over mutual TLS too. Probes and cnmctl run in that namespace (nsenter --net).
A second CA stands for a stranger.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import world as harness_world
from harness.stack import BIN, Tls, short_tmp
from harness.wait import until

ROOT = Path(__file__).resolve().parents[2]
HOST_ID = "tls-h1"
SERVICES = ("ipam", "controller", "driver")


def in_ns(ns: str, argv: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", "--", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@dataclass(frozen=True)
class Certs:
    dir: Path

    def client(self, ca: Certs | None = None, cert: bool = True) -> list[str]:
        """A client's flags: trusting `ca` (default: its own), showing its client cert."""
        d = self.dir
        flags = ["--tls-ca", f"{(ca or self).dir}/ca.pem"]
        return flags + (["--tls-cert", f"{d}/client.pem", "--tls-key", f"{d}/client-key.pem"]
                        if cert else [])  # fmt: skip


@dataclass(frozen=True)
class TlsWorld:
    """A world on mutual TLS with the good CA's certificates, and the rogue CA's."""

    world: harness_world.World
    good: Certs
    rogue: Certs

    @property
    def ns(self) -> str:
        return self.world.services_netns

    @property
    def controller(self) -> str:
        return self.world.controller

    @property
    def state_dir(self) -> Path:
        return self.world.state_dir(HOST_ID)

    def address(self, service: str) -> str:
        w = self.world
        addresses = {"ipam": w.ipam, "controller": w.controller, "driver": w.hosts[HOST_ID].driver}
        return addresses[service]

    def probe(self, service: str, tls: list[str]) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "services.healthcheck", "--timeout", "3", *tls,
                self.address(service)]  # fmt: skip
        return in_ns(self.ns, argv, cwd=ROOT)

    def cnmctl(self, tls: list[str], *argv: str) -> subprocess.CompletedProcess:
        return in_ns(self.ns, [str(BIN / "cnmctl"), "--controller", self.controller,
                               "--timeout", "15", *tls, *argv])  # fmt: skip


def make_certs(d: Path) -> Certs:
    subprocess.run([str(ROOT / "scripts" / "make-certs.sh"), str(d)], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    return Certs(d)


@pytest.fixture
def world(redis_url, netns_host, netns_prefix, spawn) -> Iterator[TlsWorld]:
    """IPAM, the driver of host HOST_ID and a controller, all in `netns_host`."""
    certs = short_tmp("cnmtls")
    try:
        good, rogue = make_certs(certs / "good"), make_certs(certs / "rogue")
        w = harness_world.World(spawn, redis_url, netns_prefix, tmp_prefix="cnmtls",
                                services_netns=netns_host, tls=Tls(good.dir))  # fmt: skip
        with contextlib.closing(w):
            yield TlsWorld(w.add_host(HOST_ID, netns=netns_host, start=False).build(), good, rogue)
    finally:
        shutil.rmtree(certs, ignore_errors=True)


@pytest.mark.parametrize("service", SERVICES)
def test_each_listener_serves_only_clients_with_a_certificate_of_its_ca(world, service):
    refused = {
        "plaintext": [],
        "no-client-cert": world.good.client(cert=False),
        "client-cert-of-another-ca": world.rogue.client(ca=world.good),
        "server-of-another-ca": world.good.client(ca=world.rogue),
    }
    for what, tls in refused.items():
        res = world.probe(service, tls)
        assert (res.returncode, res.stdout.strip()) == (1, "UNREACHABLE"), what
    res = world.probe(service, world.good.client())
    assert (res.returncode, res.stdout.strip()) == (0, "SERVING"), res.stderr


def test_cnmctl_with_the_right_certificate_works_end_to_end(world):
    for tls in (world.good.client(cert=False), world.rogue.client()):
        res = world.cnmctl(tls, "network", "ls")
        assert res.returncode == 125 and res.stdout == ""  # unreachable, as Docker's
        assert res.stderr.startswith(f"Error: cannot reach the controller at {world.controller}")
    tls = world.good.client()
    # Creating a bridge network and a sandbox takes the controller to IPAM and to
    # the driver: both over mutual TLS with the controller's certificate.
    made = [("network", "create", "--subnet", "10.97.0.0/24", "tlsnet"),
            ("sandbox", "create", "tlssb"), ("network", "connect", "tlsnet", "tlssb")]  # fmt: skip
    try:
        for argv in made:
            res = world.cnmctl(tls, *argv)
            assert res.returncode == 0, f"{argv}: {res.stderr}"
        inspect = world.cnmctl(tls, "sandbox", "inspect", "tlssb")
        assert "10.97.0.2" in inspect.stdout
        # The driver's state dir is root's alone; the files the runtime mounts
        # into a container stay readable to the container's users.
        hosts = json.loads(inspect.stdout)[0]["HostsPath"]
        assert stat.S_IMODE(world.state_dir.stat().st_mode) == 0o700
        assert hosts.startswith(f"{world.state_dir}/")
        assert stat.S_IMODE(Path(hosts).stat().st_mode) == 0o644
    finally:
        world.cnmctl(tls, "sandbox", "rm", "tlssb")
        world.cnmctl(tls, "network", "rm", "tlsnet")
    assert world.cnmctl(tls, "network", "ls", "-q", "--filter", "name=tlsnet").stdout == ""


@pytest.mark.parametrize("service", ["ipam", "controller", "driver"])
def test_plain_tcp_is_refused_in_one_line_and_insecure_tcp_only_on_loopback(
    service, redis_url, netns_host, netns_prefix, spawn
):
    extra = {"ipam": [], "controller": [], "driver": ["--host-id", HOST_ID]}[service]
    base = [str(BIN / f"cnm-{service}"), "--redis-url", redis_url, *extra]
    cases = {
        ("--listen", "127.0.0.1:7109"): "without mutual TLS",
        ("--listen", "0.0.0.0:7109", "--insecure-tcp"): "only on a loopback address",
    }
    for flags, message in cases.items():
        res = in_ns(netns_host, [*base, *flags])
        assert res.returncode == 2, res.stderr
        assert res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    if service == "driver":
        return  # serving plaintext on loopback is the same code for every service
    proc = spawn(
        ["nsenter", f"--net=/run/netns/{netns_host}", "--", *base,
         "--listen", "127.0.0.1:7109", "--insecure-tcp", "--log-format", "text"],
        env={"CNM_NETNS_PREFIX": netns_prefix},
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    warning = proc.stderr.readline()
    while "INSECURE" not in warning and warning:
        warning = proc.stderr.readline()
    assert "plaintext TCP on 127.0.0.1:7109 without authentication" in warning
    probe = [sys.executable, "-m", "services.healthcheck", "127.0.0.1:7109"]
    until(lambda: in_ns(netns_host, probe, cwd=ROOT).returncode == 0,
          "plaintext loopback listener SERVING", timeout=30)  # fmt: skip
