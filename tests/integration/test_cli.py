"""cnmctl end to end: the real binary as a subprocess against a real stack.

Each test starts redis (session), cnm-ipam, a cnm-driver inside a fresh
namespace (the test's "host"), and cnm-controller; then drives everything
through `.venv/bin/cnmctl --controller unix://...` and checks output shapes,
error lines, exit codes, and real packets between sandboxes (ping through
`cnmctl sandbox exec`, TCP through a published port).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import kernel_snapshot, netns
from harness.netns import exec_in
from harness.stack import BIN
from harness.wait import eventually, until
from harness.world import World, single_host

CNMCTL = str(BIN / "cnmctl")
HOST_ID = "h1"
FULL_ID = re.compile(r"^[0-9a-f]{64}$")


def cnmctl(
    stack: World, *argv: str, timeout: float = 30, stdin: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CNMCTL, "--controller", stack.controller, "--timeout", "15", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def ok(stack: World, *argv: str, timeout: float = 30) -> str:
    res = cnmctl(stack, *argv, timeout=timeout)
    assert res.returncode == 0, f"cnmctl {' '.join(argv)}: {res.returncode} {res.stderr}"
    return res.stdout


def fails(stack: World, *argv: str, code: int = 1) -> str:
    """The one error line of a refused command."""
    res = cnmctl(stack, *argv)
    assert res.returncode == code, f"cnmctl {' '.join(argv)}: {res.returncode} {res.stdout}"
    if "usage:" not in res.stderr:
        assert res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1, res.stderr
    return res.stderr


@pytest.fixture
def stack(redis_url, netns_host, netns_prefix, spawn) -> Iterator[World]:
    with single_host(spawn, redis_url, netns_host, netns_prefix, tmp_prefix="cnmcli") as st:
        yield st


def test_network_lifecycle_shapes_and_errors(stack):
    net_id = ok(
        stack,
        "network", "create", "--subnet", "10.31.0.0/24", "--ip-range", "10.31.0.128/25",
        "--gateway", "10.31.0.1", "--aux-address", "router=10.31.0.2",
        "-o", "com.docker.network.bridge.name=br-cli", "--label", "team=a", "web",
    ).strip()  # fmt: skip
    assert FULL_ID.match(net_id)
    other_id = ok(stack, "network", "create", "--label", "team=b", "db").strip()

    # Name taken: one line, exit 1, nothing else created.
    err = fails(stack, "network", "create", "web")
    assert "web" in err
    # Bad input the server refuses: one line, exit 2 (invalid input), no partial state.
    err = fails(stack, "network", "create", "--subnet", "10.31.0.0/24", "bad name!", code=2)
    assert "bad name!" in err
    fails(stack, "network", "create", "--subnet", "10.31.0.0/24", "overlapping")
    table = ok(stack, "network", "ls").splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    rows = {line.split()[1]: line.split() for line in table[1:]}
    assert set(rows) == {"web", "db"}
    assert rows["web"] == [net_id[:12], "web", "bridge", "local"]

    # Sorted by name, as docker sorts them.
    assert ok(stack, "network", "ls", "-q").split() == [other_id[:12], net_id[:12]]
    assert net_id in ok(stack, "network", "ls", "-q", "--no-trunc").split()

    lines = ok(stack, "network", "ls", "--format", "json").splitlines()
    objs = [json.loads(line) for line in lines]
    assert {o["Name"] for o in objs} == {"web", "db"}
    web = next(o for o in objs if o["Name"] == "web")
    assert web["ID"] == net_id[:12] and web["Driver"] == "bridge" and web["Scope"] == "local"

    # Filters: one key OR'ed, keys AND'ed.
    assert set(ok(stack, "network", "ls", "-q", "-f", "name=web", "-f", "name=db").split()) == {
        net_id[:12],
        other_id[:12],
    }
    assert ok(stack, "network", "ls", "-q", "-f", "label=team=a").split() == [net_id[:12]]
    assert ok(stack, "network", "ls", "-q", "-f", "name=web", "-f", "driver=null").split() == []
    assert ok(stack, "network", "ls", "-q", "-f", f"id={other_id[:6]}").split() == [other_id[:12]]
    assert len(ok(stack, "network", "ls", "-q", "-f", "scope=local").split()) == 2
    assert ok(stack, "network", "ls", "-q", "-f", "scope=global") == ""

    (obj,) = json.loads(ok(stack, "network", "inspect", "web"))
    assert obj["Id"] == net_id and obj["Name"] == "web" and obj["Driver"] == "bridge"
    assert obj["Scope"] == "local" and obj["EnableIPv6"] is False and obj["Internal"] is False
    assert obj["Created"].endswith("Z")
    assert obj["IPAM"]["Driver"] == "default"
    (cfg,) = obj["IPAM"]["Config"]
    assert cfg["Subnet"] == "10.31.0.0/24"
    assert cfg["IPRange"] == "10.31.0.128/25"
    assert cfg["Gateway"] == "10.31.0.1"
    assert cfg["AuxiliaryAddresses"] == {"router": "10.31.0.2"}
    assert obj["Options"]["com.docker.network.bridge.name"] == "br-cli"
    assert obj["Labels"] == {"team": "a"}
    assert obj["Containers"] == {}
    status = obj["Status"]["IPAM"]["Subnets"]["10.31.0.0/24"]
    assert status["IPsInUse"] >= 1 and status["DynamicIPsAvailable"] > 0

    # Several at once, by id prefix too; a missing one: the rest printed, exit 1.
    res = cnmctl(stack, "network", "inspect", net_id[:10], "ghost", "db")
    assert res.returncode == 1
    assert [o["Name"] for o in json.loads(res.stdout)] == ["web", "db"]
    assert res.stderr.startswith("Error: ") and "ghost" in res.stderr
    assert res.stderr.count("\n") == 1

    res = cnmctl(stack, "network", "rm", "ghost", "db")
    assert res.returncode == 1 and res.stdout == "db\n" and "ghost" in res.stderr

    # prune without -f asks; "n" keeps everything.
    res = cnmctl(stack, "network", "prune", stdin="n\n")
    assert res.returncode == 0 and "Are you sure" in res.stdout
    assert ok(stack, "network", "ls", "-q") == f"{net_id[:12]}\n"
    assert ok(stack, "network", "prune", "-f") == "Deleted Networks:\nweb\n"
    assert ok(stack, "network", "ls", "-q") == ""
    fails(stack, "network", "rm", "web")

    # Controller address: env when no flag; an unreachable one is one line, exit 125.
    res = subprocess.run(
        [CNMCTL, "--controller", f"unix://{stack.run_dir}/nobody.sock", "network", "ls"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 125 and res.stdout == ""
    assert res.stderr.startswith(f"Error: cannot reach the controller at unix://{stack.run_dir}")
    res = subprocess.run(
        [CNMCTL, "network", "ls"],
        capture_output=True, text=True, timeout=30,
        env={"CNM_CONTROLLER": stack.controller, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert res.returncode == 0 and res.stdout.startswith("NETWORK ID")
    res = cnmctl(stack, "network", "inspect")
    assert res.returncode == 2 and "usage:" in res.stderr


def test_two_sandboxes_connect_ping_exec_and_teardown(stack, spawn):
    ok(stack, "network", "create", "--subnet", "10.32.0.0/24", "front")
    sb1 = ok(
        stack, "sandbox", "create", "--hostname", "one", "--dns", "10.32.0.53",
        "--dns-search", "example.test", "--add-host", "db:10.32.0.99", "one",
    ).strip()  # fmt: skip
    sb2 = ok(stack, "sandbox", "create", "--hostname", "two", "two").strip()
    assert FULL_ID.match(sb1) and FULL_ID.match(sb2)
    fails(stack, "sandbox", "create", "one")

    ok(stack, "network", "connect", "--ip", "10.32.0.10", "--alias", "web", "front", "one")
    ok(stack, "network", "connect", "-p", "127.0.0.1:18080:8000", "front", "two")
    # Already on the network: refused, one line.
    fails(stack, "network", "connect", "front", "one")
    # A bad port spec never reaches the controller.
    res = cnmctl(stack, "network", "connect", "-p", "1.2.3.4.5:80:80", "front", "one")
    assert res.returncode == 2 and "invalid publish spec" in res.stderr

    table = ok(stack, "sandbox", "ls").splitlines()
    assert table[0].split() == ["SANDBOX", "ID", "NAME", "CONTAINER", "ID", "HOST", "NETWORKS"]
    assert sorted(line.split()[1] for line in table[1:]) == ["one", "two"]
    assert set(ok(stack, "sandbox", "ls", "-q", "--no-trunc").split()) == {sb1, sb2}

    one, two = json.loads(ok(stack, "sandbox", "inspect", "one", sb2[:12]))
    assert one["Name"] == "one" and one["Id"] == sb1 and one["Host"] == HOST_ID
    assert two["Id"] == sb2
    for key in ("ContainerID", "Key", "HostsPath", "ResolvConfPath"):
        assert key in one
    assert one["Key"] and Path(one["HostsPath"]).is_absolute()
    (ep1,) = one["Endpoints"]
    assert ep1["Network"] == "front" and ep1["IPv4Address"] == "10.32.0.10/24"
    assert re.match(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", ep1["MacAddress"])
    (ep2,) = two["Endpoints"]
    ip2 = ep2["IPv4Address"].split("/")[0]

    (net,) = json.loads(ok(stack, "network", "inspect", "front"))
    assert set(net["Containers"]) == {sb1, sb2}
    c1 = net["Containers"][sb1]
    assert c1["Name"] == "one" and c1["EndpointID"] == ep1["EndpointID"]
    assert c1["IPv4Address"] == "10.32.0.10/24" and c1["MacAddress"] == ep1["MacAddress"]

    eps = ok(stack, "endpoint", "ls", "--network", "front").splitlines()
    assert eps[0].split()[:3] == ["ENDPOINT", "ID", "NAME"]
    assert len(eps) == 3
    (epobj,) = json.loads(ok(stack, "endpoint", "inspect", ep1["EndpointID"]))
    assert epobj["Id"] == ep1["EndpointID"] and epobj["SandboxID"] == sb1
    assert epobj["State"] == "joined" and epobj["Gateway"]
    fails(stack, "endpoint", "inspect", "f" * 64)
    # The -p spec reached the controller as parsed.
    (epobj2,) = json.loads(ok(stack, "endpoint", "inspect", ep2["EndpointID"]))
    assert epobj2["PortBindings"] == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}

    # Real packets: ping from one to two, through cnmctl sandbox exec.
    res = cnmctl(stack, "sandbox", "exec", "one", "--", "ping", "-c", "1", "-W", "2", ip2)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 received" in res.stdout
    # The command's exit code passes through.
    assert cnmctl(stack, "sandbox", "exec", "two", "--", "sh", "-c", "exit 7").returncode == 7
    res = cnmctl(stack, "sandbox", "exec", "two", "--", "ip", "-o", "-4", "addr", "show")
    assert f"{ip2}/24" in res.stdout

    # In use: refused with the reason, exit 1.
    assert "front" in fails(stack, "network", "rm", "front")
    ok(stack, "network", "disconnect", "front", "two")
    assert len(json.loads(ok(stack, "sandbox", "inspect", "two"))[0]["Endpoints"]) == 0
    fails(stack, "network", "disconnect", "front", "two")
    assert ok(stack, "sandbox", "rm", "one", "two") == "one\ntwo\n"
    fails(stack, "sandbox", "exec", "one", "--", "true")
    assert ok(stack, "network", "rm", "front") == "front\n"
    assert ok(stack, "sandbox", "ls", "-q") == ""


def test_published_port_reaches_the_sandbox(stack, spawn):
    ok(stack, "network", "create", "--subnet", "10.35.0.0/24", "pub")
    ok(stack, "sandbox", "create", "web")
    ok(stack, "network", "connect", "-p", "127.0.0.1:18080:8000", "pub", "web")
    (sb,) = json.loads(ok(stack, "sandbox", "inspect", "web"))
    (ep,) = sb["Endpoints"]
    ip2 = ep["IPv4Address"].split("/")[0]
    assert ep["Ports"]["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "18080"}]
    # TCP through the published port, on the host's loopback.
    server = spawn(
        [CNMCTL, "--controller", stack.controller, "sandbox", "exec", "web", "--",
         "python3", "-m", "http.server", "--bind", ip2, "8000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        res = until(
            lambda: (r := exec_in(
                stack.hosts[HOST_ID].netns,
                "python3", "-c",
                "import urllib.request as u;"
                "print(u.urlopen('http://127.0.0.1:18080/', timeout=2).status)",
                check=False, timeout=10,
            )).returncode == 0 and r,
            "the published port answering", timeout=10, interval=0.2,
        )  # fmt: skip
        assert res.stdout.strip() == "200", res.stderr
    finally:
        spawn.stop(server)


def test_runtime_namespace_dual_stack_and_sandbox_files(stack):
    """--netns (the runtime's own namespace), --ip/--ip6, --ipv6 --internal, and the
    hosts/resolv.conf the sandbox flags ask for."""
    ext = f"cnmtest-{kernel_snapshot.TEST_TAG}-ext{uuid.uuid4().hex[:6]}"
    netns.create(ext)
    try:
        ok(
            stack, "network", "create", "--ipv6", "--internal", "--subnet", "10.36.0.0/24",
            "--subnet", "fd00:36::/64", "dual",
        )  # fmt: skip
        (net,) = json.loads(ok(stack, "network", "inspect", "dual"))
        assert net["EnableIPv6"] is True and net["Internal"] is True
        assert [c["Subnet"] for c in net["IPAM"]["Config"]] == ["10.36.0.0/24", "fd00:36::/64"]
        assert set(net["Status"]["IPAM"]["Subnets"]) == {"10.36.0.0/24", "fd00:36::/64"}

        ok(
            stack, "sandbox", "create", "--netns", f"/run/netns/{ext}", "--hostname", "ext",
            "--dns", "10.36.0.53", "--dns-search", "example.test", "--dns-option", "ndots:2",
            "--add-host", "db:10.36.0.99", "--container-id", "c0ffee", "--label", "app=x", "ext",
        )  # fmt: skip
        ok(stack, "sandbox", "create", "peer")
        ok(stack, "network", "connect", "--ip", "10.36.0.5", "--ip6", "fd00:36::5", "dual", "ext")
        ok(stack, "network", "connect", "dual", "peer")
        sb_ext, sb_peer = json.loads(ok(stack, "sandbox", "inspect", "ext", "peer"))
        assert sb_ext["Key"] == f"/run/netns/{ext}" and sb_ext["External"] is True
        assert sb_ext["ContainerID"] == "c0ffee" and sb_ext["Labels"] == {"app": "x"}
        assert sb_ext["Hostname"] == "ext" and sb_ext["Dns"] == ["10.36.0.53"]
        assert sb_ext["ExtraHosts"] == ["db:10.36.0.99"]
        (ep,) = sb_ext["Endpoints"]
        assert ep["IPv4Address"] == "10.36.0.5/24" and ep["IPv6Address"] == "fd00:36::5/64"
        peer6 = sb_peer["Endpoints"][0]["IPv6Address"].split("/")[0]

        # The runtime's namespace got the interface: seen with plain ip netns exec too.
        addrs = exec_in(ext, "ip", "-o", "addr", "show").stdout
        assert "10.36.0.5/24" in addrs and "fd00:36::5/64" in addrs
        res = cnmctl(
            stack, "sandbox", "exec", "ext", "--", "ping", "-6", "-c", "1", "-W", "2", peer6
        )
        assert res.returncode == 0, res.stdout + res.stderr

        hosts = Path(sb_ext["HostsPath"]).read_text()
        assert re.search(r"^10\.36\.0\.99\s+db$", hosts, re.M), hosts
        resolv = Path(sb_ext["ResolvConfPath"]).read_text()
        # The embedded resolver first, forwarding to the sandbox's --dns server.
        assert "nameserver 127.0.0.11" in resolv and "# ExtServers: [10.36.0.53]" in resolv
        assert "search example.test" in resolv

        ok(stack, "sandbox", "rm", "ext", "peer")
        # The runtime's namespace is the runtime's: still there, without our interface.
        assert "10.36.0.5" not in exec_in(ext, "ip", "-o", "addr", "show").stdout
    finally:
        netns.delete(ext)


def test_the_host_namespace_is_never_a_sandbox(stack, spawn):
    """`--netns /proc/self/ns/net` once replaced the host's default route on
    connect: a sandbox key outside the runtimes' places, or one that is the
    driver's own namespace by any path, is refused and nothing is stored."""
    err = fails(stack, "sandbox", "create", "--netns", "/proc/self/ns/net", "hostself", code=2)
    assert "sandbox key '/proc/self/ns/net' is not allowed" in err
    # A process of the driver's host namespace: an allowed place, the wrong namespace.
    proc = spawn(["nsenter", f"--net=/run/netns/{stack.hosts[HOST_ID].netns}", "--", "sleep", "60"])
    key = f"/proc/{proc.pid}/ns/net"
    until(
        lambda: os.readlink(key) != os.readlink("/proc/self/ns/net"),
        "nsenter entered",
        interval=0.02,
    )
    err = fails(stack, "sandbox", "create", "--netns", key, "hostself")
    assert f"sandbox key '{key}' is the host's own network namespace" in err
    assert ok(stack, "sandbox", "ls", "-q") == ""


def test_hosts_drivers_pools_events_and_gc(stack, spawn):
    (h,) = json.loads(ok(stack, "host", "inspect", HOST_ID))
    assert h["ID"] == HOST_ID and h["Address"].startswith("unix://")
    fails(stack, "host", "inspect", "nohost")
    table = ok(stack, "host", "ls").splitlines()
    assert table[0].split()[:2] == ["HOST", "ID"]
    row = table[1].split()
    assert row[0] == HOST_ID and "ready" in row
    (host,) = [
        json.loads(line) for line in ok(stack, "host", "ls", "--format", "json").splitlines()
    ]
    assert host["ID"] == HOST_ID and host["State"] == "ready"
    assert {d["Name"] for d in host["Drivers"]} >= {"bridge", "null"}

    drivers = {json.loads(line)["Name"]: json.loads(line) for line in
               ok(stack, "driver", "ls", "--format", "json").splitlines()}  # fmt: skip
    assert drivers["bridge"]["Scope"] == "local" and drivers["bridge"]["Hosts"] == [HOST_ID]
    assert ok(stack, "driver", "ls").splitlines()[0].split() == ["NAME", "SCOPE", "HOSTS", "ERROR"]

    # A live watcher sees what happens after it started (other events, e.g. the
    # host coming up, may come first: look for ours among them).
    watcher = spawn(
        [CNMCTL, "--controller", stack.controller, "events", "--format", "json",
         "--timeout", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[dict] = []
    reader = threading.Thread(
        target=lambda: seen.extend(json.loads(line) for line in watcher.stdout), daemon=True
    )
    reader.start()

    def live_creates() -> list[dict]:
        return [e for e in list(seen) if e["Type"] == "network" and e["Action"] == "create"]

    created: list[str] = []
    try:
        # Until the watcher has subscribed, a create goes unseen: create again.
        while len(created) < 20 and watcher.poll() is None:
            name = f"live{len(created)}"
            ok(stack, "network", "create", "--subnet", f"10.33.{len(created)}.0/24", name)
            created.append(name)
            if eventually(live_creates, timeout=0.3, interval=0.05):
                break
    finally:
        spawn.stop(watcher)
        reader.join(5)
    assert watcher.returncode in (0, -signal.SIGTERM), watcher.stderr.read()
    assert live_creates(), seen
    assert {e["Name"] for e in live_creates()} <= set(created)
    revs = [e["Revision"] for e in seen]
    assert revs == sorted(revs) and len(set(revs)) == len(revs)

    # Replaying from revision 1: everything after it, in order, then --timeout ends it.
    lines = ok(stack, "events", "--since-revision", "1", "--timeout", "1", "--format", "json")
    events = [json.loads(line) for line in lines.splitlines()]
    revisions = [e["Revision"] for e in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    assert revisions and revisions[0] > 1
    assert {e["Name"] for e in events if e["Type"] == "network"} >= set(created[1:])
    text = ok(stack, "events", "--since-revision", "1", "--limit", "1")
    assert re.match(r"^\S+Z \w+ \w+ \S+ \(.*revision=2\)$", text.strip()), text

    # Pools: one per network, with used/free.
    pools = ok(stack, "ipam", "ls").splitlines()
    assert pools[0].split() == [
        "POOL",
        "SUB",
        "POOL",
        "ADDRESS",
        "SPACE",
        "NETWORK",
        "USED",
        "FREE",
    ]
    as_json = [
        json.loads(line) for line in ok(stack, "ipam", "ls", "--format", "json").splitlines()
    ]
    assert "10.33.0.0/24" in {p["Pool"] for p in as_json}
    pool = next(p for p in as_json if p["Pool"] == "10.33.0.0/24")
    assert pool["Used"] >= 1 and pool["Free"] > 0

    # gc: sandboxes not listed are released; listed ones stay.
    ok(stack, "network", "create", "--subnet", "10.34.0.0/24", "gcnet")
    keep = ok(stack, "sandbox", "create", "keep").strip()
    drop = ok(stack, "sandbox", "create", "drop").strip()
    ok(stack, "network", "connect", "gcnet", "keep")
    ok(stack, "network", "connect", "gcnet", "drop")
    out = ok(stack, "gc", keep)
    assert f"removed sandbox {drop}" in out.splitlines()
    assert ok(stack, "sandbox", "ls", "-q", "--no-trunc").split() == [keep]
    (net,) = json.loads(ok(stack, "network", "inspect", "gcnet"))
    assert set(net["Containers"]) == {keep}
    ok(stack, "sandbox", "rm", "keep")
