"""Port publishing end to end through the controller and `cnmctl`: `-p` in every form,
the host ports actually chosen in `sandbox inspect` (`Ports`), traffic to a dynamic
port, and refusals (port taken, internal network) as one error line with nothing left.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports_world import ask, serve

from harness.netns import exec_in
from harness.stack import BIN
from harness.world import single_host

CNMCTL = str(BIN / "cnmctl")


@pytest.fixture
def ctl(redis_url, netns_host, netns_prefix, spawn) -> Iterator:
    with single_host(spawn, redis_url, netns_host, netns_prefix, tmp_prefix="cnmports") as st:

        def run(*argv: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [CNMCTL, "--controller", st.controller, "--timeout", "15", *argv],
                capture_output=True,
                text=True,
                timeout=30,
            )

        yield run


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_sandbox_inspect_shows_the_host_ports_chosen_and_they_work(ctl, netns_host):
    ok(ctl("network", "create", "--subnet", "10.95.0.0/24", "pub"))
    ok(ctl("sandbox", "create", "web"))
    ok(ctl("network", "connect", "-p", "8080:80", "-p", "81", "-p", "9000-9001:82-83",
           "-p", "7000-7010:84/udp", "pub", "web"))  # fmt: skip
    (sb,) = json.loads(ok(ctl("sandbox", "inspect", "web")))
    (ep,) = sb["Endpoints"]
    ports = ep["Ports"]
    dynamic = int(ports["81/tcp"][0]["HostPort"])
    low, high = map(int, exec_in(netns_host, "cat", "/proc/sys/net/ipv4/ip_local_port_range")
                    .stdout.split())  # fmt: skip
    assert low <= dynamic <= high
    assert ports == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
        "81/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(dynamic)}],
        "82/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9000"}],
        "83/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9001"}],
        "84/udp": [{"HostIp": "0.0.0.0", "HostPort": "7000"}],
    }
    ns = Path(sb["Key"]).name
    with serve(ns, "tcp", 80, 81, 83), serve(ns, "udp", 84):
        got = ask(netns_host, ("127.0.0.1", 8080), ("127.0.0.1", dynamic), ("127.0.0.1", 9001),
                  ("127.0.0.1", 7000, "udp"))  # fmt: skip
    assert [g.split()[-1] for g in got] == ["80", "81", "83", "84"], got


def test_refusals_are_one_line_and_leave_no_endpoint(ctl):
    ok(ctl("network", "create", "--subnet", "10.96.0.0/24", "pub"))
    ok(ctl("network", "create", "--internal", "--subnet", "10.97.0.0/24", "inner"))
    ok(ctl("sandbox", "create", "first"))
    ok(ctl("sandbox", "create", "second"))
    ok(ctl("network", "connect", "-p", "8080:80", "pub", "first"))
    before = ok(ctl("endpoint", "ls", "-q"))

    res = ctl("network", "connect", "-p", "8080:80", "pub", "second")
    assert res.returncode == 1
    # The controller names where it failed first, as Docker's daemon does.
    assert res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1
    assert res.stderr.endswith("Bind for 0.0.0.0:8080 failed: port is already allocated\n")
    res = ctl("network", "connect", "-p", "8081:80", "inner", "second")
    assert res.returncode == 1
    assert "is internal: ports cannot be published (8081:80/tcp)" in res.stderr
    assert res.stderr.count("\n") == 1

    assert ok(ctl("endpoint", "ls", "-q")) == before
    (second,) = json.loads(ok(ctl("sandbox", "inspect", "second")))
    assert second["Endpoints"] == []
