"""The README's first command, `scripts/demo.sh`, run for real.

The script runs inside a fresh namespace (the `netns_host` fixture, entered
with nsenter --net, so cnmd's bridge, veths and nftables rules live there and
its 127.0.0.1 is that namespace's loopback) with a private run and data dir
(CNM_RUN_DIR, CNM_DATA_DIR) and this run's CNM_NETNS_PREFIX, so it touches
neither /run/cnm nor the machine's root namespace.

One test, in the order a user lives it: the first run (set-up, cnmd started,
the scenario); what it left checked from outside (the sandboxes ping each
other); a run refused because a name is taken by an object that is not the
demo's (nothing changed); a second run that reuses cnmd, replaces the first
run's objects and, with CNM_DEMO_STOP=1, removes them and stops cnmd.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.spawner import Spawner
from harness.stack import BIN, short_tmp
from harness.wait import eventually

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.sh"
PAGE = "<h1>Hello from the web sandbox</h1>"
PING_OK = "3 packets transmitted, 3 received, 0% packet loss"
# 60 s for the whole test; one run takes ~5 s.
RUN_TIMEOUT = 40


@dataclass(frozen=True)
class Demo:
    netns: str
    run_dir: Path
    data_dir: Path
    netns_prefix: str

    @property
    def controller(self) -> str:
        return f"unix://{self.run_dir}/controller.sock"

    def env(self, **extra: str) -> dict[str, str]:
        # The machine's own CNM_* settings (a developer's CNM_REDIS_URL...) must
        # not reach this cnmd; nor /etc/cnm/cnm.toml (CNM_CONFIG empty).
        base = {k: v for k, v in os.environ.items() if not k.startswith("CNM_")}
        return {
            **base,
            "CNM_RUN_DIR": str(self.run_dir),
            "CNM_DATA_DIR": str(self.data_dir),
            "CNM_NETNS_PREFIX": self.netns_prefix,
            "CNM_CONFIG": "",
            **extra,
        }

    def run(self, **extra: str) -> subprocess.CompletedProcess:
        """demo.sh in the test's namespace; its whole process group killed on a timeout."""
        argv = ["nsenter", f"--net=/run/netns/{self.netns}", "--", str(DEMO)]
        spawn = Spawner()
        proc = spawn(
            argv, env=self.env(**extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            out, _ = proc.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            spawn.stop(proc, signal.SIGKILL, group=True)
            out, _ = proc.communicate()
            pytest.fail(f"demo.sh did not finish within {RUN_TIMEOUT}s:\n{out}")
        return subprocess.CompletedProcess(argv, proc.returncode, out, "")

    def cnmctl(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "cnmctl"), "--controller", self.controller, "--timeout", "10", *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def cnmd_status(self) -> int:
        res = subprocess.run(
            [str(BIN / "cnmd"), "status", "--run-dir", str(self.run_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return res.returncode

    def cnmd_pids(self) -> list[int]:
        state = json.loads((self.run_dir / "cnmd.json").read_text())
        return [state["pid"], *(c["pid"] for c in state["components"] if c.get("pid"))]


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    """The pids still alive after up to `timeout` seconds."""
    eventually(lambda: not any(alive(p) for p in pids), timeout, 0.05)
    return [p for p in pids if alive(p)]


def http_pids(output: str) -> list[int]:
    """The PIDs the demo printed for the HTTP servers it started."""
    return [int(p) for p in re.findall(r"^\(pid (\d+); this script stops it", output, re.M)]


def stop_http_server(pid: int) -> None:
    """A demo's HTTP server left running (the demo was killed): by PID, if it is one."""
    with contextlib.suppress(OSError):
        if b"http.server" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)


def step_output(output: str, command: str) -> str:
    """What the demo printed after `$ COMMAND`, up to its next step."""
    head = f"\n$ {command}\n"
    assert head in output, f"step {command!r} not shown:\n{output}"
    rest = output.split(head, 1)[1]
    return re.split(r"\n(?:\$ |== )", rest, maxsplit=1)[0]


def assert_scenario_worked(output: str) -> None:
    """Both sandboxes reachable (ping both ways, the page through 127.0.0.1:8080)."""
    for step in ("cnmctl network create", "cnmctl sandbox create", "cnmctl network connect"):
        assert f"$ {step}" in output, output
    # By name, through cnmd's resolver (cnm-dns).
    answer = step_output(output, "cnmctl sandbox exec client -- getent hosts web")
    assert re.search(r"^10\.123\.0\.\d+\s+web$", answer, re.M), output
    pings = [line for line in output.splitlines() if "packets transmitted" in line]
    assert len(pings) == 2 and all(p.startswith(PING_OK) for p in pings), output
    assert PAGE in step_output(output, "curl -sS --max-time 5 http://127.0.0.1:8080/"), output
    (net,) = json.loads(step_output(output, "cnmctl network inspect demo"))
    assert net["Driver"] == "bridge" and net["Labels"] == {"cnm.demo": "true"}
    assert net["IPAM"]["Config"][0]["Subnet"] == "10.123.0.0/24"
    assert sorted(c["Name"] for c in net["Containers"].values()) == ["client", "web"]
    sandboxes = step_output(output, "cnmctl sandbox ls").splitlines()
    assert sorted(line.split()[1] for line in sandboxes[1:]) == ["client", "web"]
    networks = step_output(output, "cnmctl network ls").splitlines()
    # cnmd's built-in host and none networks are there too, as in Docker.
    assert [line.split()[1:] for line in networks[1:]] == [
        ["demo", "bridge", "local"],
        ["host", "host", "local"],
        ["none", "null", "local"],
    ]
    # The HTTP server was stopped by the PID it printed.
    (pid,) = http_pids(output)
    assert f"\n$ kill {pid}\n" in output
    assert not wait_gone([pid], 5), f"HTTP server {pid} still runs"


def netns_paths(prefix: str) -> list[str]:
    return sorted(p for p in os.listdir("/run/netns") if p.startswith(prefix))


@pytest.fixture
def demo(netns_host: str, netns_prefix: str) -> Iterator[Demo]:
    base = short_tmp("cnmdemo")  # unix socket paths must stay under 108 bytes
    d = Demo(netns_host, base / "run", base / "data", netns_prefix)
    try:
        yield d
    finally:
        # Only after a failure is anything left: the demo's own sandboxes and
        # network released through cnm, then cnmd stopped, all by PID.
        if d.cnmd_status() != 3:
            d.cnmctl("gc", "--all")
            d.cnmctl("network", "prune", "-f")
            pids = d.cnmd_pids()
            subprocess.run(
                [str(BIN / "cnmd"), "stop", "--run-dir", str(d.run_dir)],
                capture_output=True,
                timeout=30,
            )
            for pid in wait_gone(pids, 5):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            stop_http_server(int((d.run_dir / "demo-http.pid").read_text()))
        shutil.rmtree(base, ignore_errors=True)


def test_demo_runs_twice_and_stops_cleanly(demo: Demo) -> None:
    # 1. The README's command as it is: set-up, a fresh cnmd, the scenario.
    first = demo.run()
    assert first.returncode == 0, first.stdout
    assert "cnmd started (pid" in first.stdout
    assert_scenario_worked(first.stdout)
    assert "cnmd keeps running in the background" in first.stdout
    assert demo.cnmd_status() == 0
    cnmd_pids = demo.cnmd_pids()

    # What it left is real: the two sandboxes' namespaces reach each other.
    sbs = json.loads(demo.cnmctl("sandbox", "inspect", "web", "client").stdout)
    keys = [sb["Key"] for sb in sbs]
    assert all(Path(k).exists() and Path(k).name.startswith(demo.netns_prefix) for k in keys)
    web_ip = sbs[0]["Endpoints"][0]["IPv4Address"].split("/")[0]
    ping = subprocess.run(
        ["nsenter", f"--net={keys[1]}", "--", "ping", "-c", "1", "-W", "2", "-q", web_ip],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr

    # 2. A name taken by something that is not the demo's: refused, nothing changed.
    assert demo.cnmctl("sandbox", "rm", "client").returncode == 0
    assert demo.cnmctl("sandbox", "create", "client").returncode == 0
    before = demo.cnmctl("sandbox", "inspect", "web", "client").stdout
    refused = demo.run(CNM_DEMO_SETUP="0")
    assert refused.returncode == 1, refused.stdout
    assert 'sandbox "client", not the demo\'s (no label cnm.demo=true)' in refused.stdout
    assert "$ cnmctl sandbox rm" not in refused.stdout
    assert demo.cnmctl("sandbox", "inspect", "web", "client").stdout == before
    assert demo.cnmctl("network", "inspect", "demo").returncode == 0
    assert demo.cnmctl("sandbox", "rm", "client").returncode == 0

    # 3. Again, on the same cnmd: the first run's objects replaced, then all removed
    #    and cnmd stopped (CNM_DEMO_STOP=1).
    second = demo.run(CNM_DEMO_SETUP="0", CNM_DEMO_STOP="1")
    assert second.returncode == 0, second.stdout
    assert "cnmd is already running and SERVING" in second.stdout
    removed = second.stdout.split("== a bridge network", 1)[0]
    assert "$ cnmctl sandbox rm web" in removed and "$ cnmctl network rm demo" in removed
    assert_scenario_worked(second.stdout)
    cleanup = second.stdout.split("== clean up (CNM_DEMO_STOP=1)", 1)[1]
    for step in ("cnmctl sandbox rm web", "cnmctl sandbox rm client", "cnmctl network rm demo"):
        assert f"$ {step}\n" in cleanup
    assert f"cnmd (pid {cnmd_pids[0]}) stopped" in cleanup

    # Nothing left: no cnmd, Redis or service process, no sandbox namespace, no
    # link but lo in the namespace the demo ran in.
    assert demo.cnmd_status() == 3
    assert not wait_gone(cnmd_pids, 5), "cnmd or one of its children still runs"
    assert netns_paths(demo.netns_prefix) == []
    links = subprocess.run(
        ["ip", "-n", demo.netns, "-o", "link", "show"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.splitlines()
    assert [line.split(": ")[1] for line in links] == ["lo"]
    assert not (demo.run_dir / "demo-http.pid").exists()
