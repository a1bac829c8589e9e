"""cnmd, the all-in-one launcher: real redis-server, real cnm-ipam / cnm-controller /
cnm-driver processes, in a temporary run dir and data dir.

cnmd runs inside a fresh network namespace (the `netns_host` fixture, entered
with nsenter --net) with the
driver's CNM_NETNS_PREFIX set to this run's tag, so whatever the driver does
to the kernel at start-up stays out of this machine's root namespace.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from harness.stack import short_tmp, wait_serving
from harness.wait import until
from services.version import version

BIN = Path(sys.executable).parent
SERVICES = {
    "ipam": ["cnm.ipam.v1.Ipam", "cnm.ipam.v1.IdAllocator"],
    "controller": ["cnm.controller.v1.Controller"],
    "driver": ["cnm.driver.v1.Driver"],
    # The resolver answers DNS in the sandboxes; its socket serves health only.
    "dns": [],
}
HOST_ID = "cnmd-test-host"


def _main_missing(name: str) -> bool:
    return importlib.util.find_spec(f"{name}_service.main") is None


MISSING = [n for n in SERVICES if _main_missing(n)]
needs_all_services = pytest.mark.skipif(
    bool(MISSING),
    reason=f"service main not written yet: {', '.join(f'{n}_service.main' for n in MISSING)}",
)


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Dirs:
    run: Path
    data: Path

    def args(self) -> list[str]:
        return ["--run-dir", str(self.run), "--data-dir", str(self.data)]

    def state(self) -> dict:
        return json.loads((self.run / "cnmd.json").read_text())

    def pids(self) -> dict[str, int]:
        return {c["name"]: c["pid"] for c in self.state()["components"] if c.get("pid")}


@pytest.fixture
def dirs() -> Iterator[Dirs]:
    # Short: unix socket paths must stay under 108 bytes.
    base = short_tmp("cnmd")
    try:
        yield Dirs(base / "run", base / "data")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def cnmd_env(netns_prefix: str) -> dict[str, str]:
    return {"CNM_NETNS_PREFIX": netns_prefix, "CNM_LOG_FORMAT": "json"}


def in_netns(netns_name: str | None, argv: list[str]) -> list[str]:
    # nsenter --net, not `ip netns exec`: the latter gives its child a private
    # mount namespace, so namespaces the driver bind-mounts under /run/netns
    # would be invisible here and vanish with it.
    return ["nsenter", f"--net=/run/netns/{netns_name}", "--", *argv] if netns_name else argv


def cnmd(*args: str, env: dict[str, str] | None = None, netns_name: str | None = None):
    argv = in_netns(netns_name, [str(BIN / "cnmd"), *args])
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def start_cnmd(spawn, dirs: Dirs, netns_name: str, env: dict[str, str], *extra: str):
    """cnmd in the foreground (a child of this test), once every component is SERVING."""
    proc = spawn(
        in_netns(netns_name, [str(BIN / "cnmd"), *dirs.args(), "--host-id", HOST_ID, *extra]),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        until(
            lambda: (
                proc.poll() is not None
                or ((dirs.run / "cnmd.json").exists() and dirs.state()["ready"])
            ),
            "cnmd ready",
            timeout=30,
        )
    except AssertionError:
        proc.kill()
        raise AssertionError(f"cnmd not ready; stderr: {proc.stderr.read()}") from None
    assert proc.poll() is None, proc.stderr.read()
    return proc


def grpcurl_list(sock: Path) -> list[str]:
    res = subprocess.run(
        [str(BIN / "grpcurl"), "-plaintext", "-unix", "-max-time", "5", str(sock), "list"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


# --- a running cnmd ---------------------------------------------------------------------------


@needs_all_services
def test_cnmd_brings_up_redis_and_its_services(dirs, netns_host, cnmd_env, spawn) -> None:
    # What an older cnmd left: a world-readable data dir and log.
    (dirs.data / "log").mkdir(parents=True, mode=0o755)
    dirs.data.chmod(0o755)
    (dirs.data / "log" / "ipam.log").write_text("")
    (dirs.data / "log" / "ipam.log").chmod(0o644)
    start_cnmd(spawn, dirs, netns_host, cnmd_env)

    res = cnmd("status", "--run-dir", str(dirs.run))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith(f"cnmd version {version()}, pid ")
    assert cnmd("--version").stdout.startswith(f"cnmd version {version()} (python ")
    lines = {ln.split()[0]: ln.split() for ln in res.stdout.splitlines()[1:]}
    assert set(lines) == {"redis", *SERVICES}
    assert all(fields[1] == "SERVING" for fields in lines.values()), res.stdout

    for name, expected in SERVICES.items():
        sock = dirs.run / f"{name}.sock"
        listed = grpcurl_list(sock)
        assert set(expected) <= set(listed), (name, listed)
        assert "grpc.health.v1.Health" in listed
        # The compose health check's command, against the same socket.
        check = subprocess.run(
            [sys.executable, "-m", "services.healthcheck", f"unix://{sock}"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert (check.returncode, check.stdout.strip()) == (0, "SERVING")

    # The private Redis: unix socket only, append-only file under the data dir.
    client = redis.Redis(unix_socket_path=str(dirs.run / "redis.sock"), decode_responses=True)
    try:
        assert client.config_get("port") == {"port": "0"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir")["dir"] == str(dirs.data / "redis")
        # The driver registered this host with the id cnmd gave it.
        host = client.hgetall(f"cnm:host:{HOST_ID}")
        assert host.get("address") == f"unix://{dirs.run}/driver.sock", host
    finally:
        client.close()
    assert (dirs.data / "redis" / "appendonlydir").is_dir()
    # Everything cnm knows is root's alone: directories 0700, files 0600.
    shared = {
        str(p.relative_to(dirs.run.parent)): oct(p.lstat().st_mode & 0o777)
        for top in (dirs.run, dirs.data)
        for p in (top, *top.rglob("*"))
        if p.lstat().st_mode & 0o077
    }
    assert shared == {}, shared
    assert {p.name for p in (dirs.data / "log").iterdir()} >= {"redis.log", "driver.log"}
    assert (dirs.run / "cnmd.pid").read_text().strip() == str(dirs.state()["pid"])

    # A second cnmd on the same run dir is refused in one line.
    second = cnmd(*dirs.args(), env=cnmd_env, netns_name=netns_host)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"cnmd: error: another cnmd (pid {dirs.state()['pid']}) is running with run dir {dirs.run}"
    ]


@needs_all_services
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signal_ends_every_process(dirs, netns_host, cnmd_env, spawn, sig) -> None:
    proc = start_cnmd(spawn, dirs, netns_host, cnmd_env)
    pids = dirs.pids()
    assert set(pids) == {"redis", *SERVICES} and all(alive(p) for p in pids.values())

    proc.send_signal(sig)
    assert proc.wait(10) == 0
    until(lambda: not any(alive(p) for p in pids.values()), "children gone", timeout=10)
    # No socket, pid file or state file is left in the run dir.
    assert sorted(p.name for p in dirs.run.iterdir()) == []


@needs_all_services
def test_a_dead_child_is_restarted_and_redis_keeps_its_data(dirs, netns_host, cnmd_env, spawn):
    start_cnmd(spawn, dirs, netns_host, cnmd_env)
    sock = str(dirs.run / "redis.sock")
    client = redis.Redis(unix_socket_path=sock, decode_responses=True)
    client.set("cnmd-test:key", "kept")
    client.close()
    # SIGKILL for a service; SIGTERM for Redis: a clean exit counts as a death too.
    for name, sig in (("controller", signal.SIGKILL), ("redis", signal.SIGTERM)):
        old = dirs.pids()[name]
        os.kill(old, sig)
        until(lambda n=name, o=old: dirs.pids().get(n) not in (None, o), f"{name} back", timeout=10)
        assert not alive(old)
    for name in SERVICES:
        wait_serving(f"unix://{dirs.run}/{name}.sock", timeout=15)
    res = cnmd("status", "--run-dir", str(dirs.run))
    assert res.returncode == 0, res.stdout
    restarts = {ln.split()[0]: ln.split()[-1] for ln in res.stdout.splitlines()[1:]}
    assert restarts == {"redis": "1", "ipam": "0", "controller": "1", "driver": "0", "dns": "0"}
    # The restarted Redis read the append-only file back.
    client = redis.Redis(unix_socket_path=sock, decode_responses=True)
    try:
        assert client.get("cnmd-test:key") == "kept"
    finally:
        client.close()


@needs_all_services
def test_daemon_status_and_stop(dirs, netns_host, cnmd_env) -> None:
    res = cnmd(*dirs.args(), "--host-id", HOST_ID, "--daemon", env=cnmd_env, netns_name=netns_host)
    try:
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.startswith("cnmd started (pid ")
        pids = dirs.pids()
        daemon = dirs.state()["pid"]
        assert cnmd("status", "--run-dir", str(dirs.run)).returncode == 0
        assert (dirs.data / "log" / "cnmd.log").is_file()

        stopped = cnmd("stop", "--run-dir", str(dirs.run))
        assert stopped.returncode == 0 and f"cnmd (pid {daemon}) stopped" in stopped.stdout
        until(lambda: not any(alive(p) for p in [daemon, *pids.values()]), "all gone", timeout=5)

        status = cnmd("status", "--run-dir", str(dirs.run))
        assert status.returncode == 3 and "not running" in status.stdout
        again = cnmd("stop", "--run-dir", str(dirs.run))
        assert again.returncode == 0 and "not running" in again.stdout
    finally:
        # The daemon is not this test's child: stop it by the PID it recorded.
        with contextlib.suppress(OSError, ValueError, KeyError):
            for pid in [dirs.state()["pid"], *dirs.pids().values()]:
                os.kill(pid, signal.SIGKILL)


# --- configuration errors: one line, exit 2, nothing started or created ------------------------


@pytest.mark.parametrize(
    ("args", "toml", "env", "message"),
    [
        ([], "bogus = 1\n", {}, "config file {cfg}: unknown key 'bogus'"),
        ([], "[cnmd]\nrun_dri = '/x'\n", {}, "config file {cfg}: unknown key 'run_dri' in [cnmd]"),
        ([], "[cnmd\n", {}, "config file {cfg}: "),
        (["--run-dir", "/tmp/" + "d" * 100], None, {}, "unix socket path longer than 107 bytes"),
        (
            ["--run-dir", "/proc/cnm-test/run"],
            None,
            {},
            "run dir /proc/cnm-test/run: cannot create",
        ),
        (["--redis-url", "http://localhost"], None, {}, "redis url 'http://localhost': expected"),
        ([], None, {"CNM_LOG_LEVEL": "chatty"}, "log_level 'chatty': expected debug"),
        (["--no-such-flag"], None, {}, "unrecognized arguments: --no-such-flag"),
        (["status", "--data-dir", "/x"], None, {}, "unrecognized arguments: --data-dir /x"),
    ],
    ids=[
        "unknown-top-level-key",
        "unknown-key-in-cnmd-section",
        "invalid-toml",
        "socket-path-too-long",
        "run-dir-not-creatable",
        "bad-redis-url",
        "bad-log-level-in-env",
        "unknown-flag",
        "status-takes-no-data-dir",
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(dirs, args, toml, env, message) -> None:
    base = dirs.run.parent
    cfg = base / "cnm.toml"
    argv = list(args)
    if toml is not None:
        cfg.write_text(toml)
        argv = ["--config", str(cfg), *argv]
    if "status" not in argv:
        argv += ["--data-dir", str(dirs.data)]
        if "--run-dir" not in argv:
            argv += ["--run-dir", str(dirs.run)]
    res = cnmd(*argv, env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("cnmd: error: ") and message.format(cfg=cfg) in lines[0]
    assert "Traceback" not in res.stderr
    assert not dirs.run.exists() and not dirs.data.exists()


def test_bad_service_configuration_stops_cnmd_with_exit_2(dirs, netns_host, cnmd_env):
    # cnm-ipam refuses its [ipam] section: restarting cannot help, so cnmd gives up.
    cfg = dirs.run.parent / "cnm.toml"
    cfg.write_text("[ipam]\nno_such_key = 1\n")
    res = cnmd(
        "--config",
        str(cfg),
        *dirs.args(),
        "--host-id",
        HOST_ID,
        env=cnmd_env,
        netns_name=netns_host,
    )
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert (
        last
        == f"cnmd: error: cnm-ipam: error: config file {cfg}: unknown key 'no_such_key' in [ipam]"
    )
    assert "Traceback" not in res.stderr
    # Nothing it started is left: no pid file, no sockets.
    assert sorted(p.name for p in dirs.run.iterdir()) == []


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("unix:///nonexistent-cnm-dir/ipam.sock", "directory /nonexistent-cnm-dir does not exist"),
        ("127.0.0.1:{port}", "address in use"),
        ("unix://relative.sock", "must be absolute"),
    ],
    ids=["socket-dir-missing", "tcp-port-in-use", "relative-socket-path"],
)
def test_service_bad_listen_address_is_one_line_and_exit_2(dirs, listen, message) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = listen.format(port=taken.getsockname()[1])
        res = subprocess.run(
            # --insecure-tcp: past the mutual-TLS check, to the port's own.
            [
                str(BIN / "cnm-ipam"),
                "--listen",
                address,
                "--redis-url",
                "unix:///nonexistent",
                "--insecure-tcp",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnm-ipam: error: "), res.stderr
    assert message in lines[0]


# --- a service whose Redis is unreachable -------------------------------------------------------


@pytest.mark.parametrize("service", list(SERVICES))
def test_service_with_unreachable_redis_is_not_serving(
    dirs, netns_host, netns_prefix, spawn, service
) -> None:
    if _main_missing(service):
        pytest.skip(f"{service}_service.main not written yet")
    from services.healthcheck import probe_grpc

    dirs.run.mkdir(parents=True)
    url = f"unix://{dirs.run}/no-redis-here.sock"
    address = f"unix://{dirs.run}/{service}.sock"
    argv = [str(BIN / f"cnm-{service}"), "--listen", address, "--redis-url", url]
    argv += {
        "ipam": [],
        "controller": ["--ipam", f"unix://{dirs.run}/ipam.sock"],
        "driver": ["--host-id", HOST_ID, "--state-dir", str(dirs.data / "driver")],
        "dns": ["--host-id", HOST_ID],
    }[service]
    proc = spawn(
        in_netns(netns_host, argv),
        env={"CNM_NETNS_PREFIX": netns_prefix, "CNM_LOG_FORMAT": "text"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    until(
        lambda: probe_grpc(address, timeout=0.5) != "UNREACHABLE" or proc.poll() is not None,
        "service answers",
        timeout=15,
    )
    assert proc.poll() is None
    # It stays NOT_SERVING (and alive) while Redis is away.
    for _ in range(3):
        assert probe_grpc(address, timeout=1) == "NOT_SERVING"
        time.sleep(0.3)
    for name in SERVICES[service][:1]:
        assert probe_grpc(address, service=name, timeout=1) == "NOT_SERVING"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err + out
    assert url in err, err


# --- cnmd cleanup: what a dead cnmd left -------------------------------------------------------


def _netns_names(prefix: str) -> set[str]:
    return {n for n in os.listdir("/run/netns") if n.startswith(prefix)}


def _in_host(netns_name: str, *argv: str) -> str:
    return subprocess.run(
        in_netns(netns_name, list(argv)), capture_output=True, text=True, timeout=10, check=True
    ).stdout


@needs_all_services
def test_cleanup_removes_what_a_killed_cnmd_left(dirs, netns_host, netns_prefix, cnmd_env, spawn):
    proc = start_cnmd(spawn, dirs, netns_host, cnmd_env)
    ctl = {**cnmd_env, "CNM_CONTROLLER": f"unix://{dirs.run}/controller.sock"}

    def cnmctl(*args: str) -> None:
        res = subprocess.run(
            [str(BIN / "cnmctl"), *args], capture_output=True, text=True, timeout=30,
            env={**os.environ, **ctl},
        )  # fmt: skip
        assert res.returncode == 0, res.stderr

    cnmctl("network", "create", "--subnet", "10.231.0.0/24", "left")
    cnmctl("sandbox", "create", "c1")
    cnmctl("network", "connect", "-p", "8080:80", "left", "c1")
    sandboxes = _netns_names(netns_prefix)
    assert sandboxes
    assert "bridge" in _in_host(netns_host, "ip", "-d", "link", "show", "type", "bridge")
    assert "table inet cnm" in _in_host(netns_host, "nft", "list", "tables")

    # Refused while cnmd runs: it would bring everything back.
    refused = cnmd("cleanup", *dirs.args(), "--host-id", HOST_ID, env=cnmd_env,
                   netns_name=netns_host)  # fmt: skip
    assert refused.returncode == 2
    assert f"cnmd (pid {proc.pid}) is running with run dir {dirs.run}" in refused.stderr
    assert _netns_names(netns_prefix) == sandboxes

    # A SIGKILLed cnmd: its children go with it (pdeathsig); the kernel state stays.
    children = dirs.pids().values()
    proc.kill()
    proc.wait(timeout=10)
    until(lambda: not any(alive(p) for p in children), "children gone", timeout=10)
    assert _netns_names(netns_prefix) == sandboxes

    res = cnmd("cleanup", *dirs.args(), "--host-id", HOST_ID, env=cnmd_env, netns_name=netns_host)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "removed this host's networks, sandboxes and state" in res.stdout
    assert _netns_names(netns_prefix) == set()
    assert _in_host(netns_host, "ip", "-d", "link", "show", "type", "bridge").strip() == ""
    assert _in_host(netns_host, "ip", "link", "show", "type", "veth").strip() == ""
    assert "cnm" not in _in_host(netns_host, "nft", "list", "tables")
    assert not (dirs.data / "redis").exists() and not (dirs.data / "driver").exists()
    assert (dirs.data / "log").is_dir()

    # Afresh: the next cnmd knows nothing of them; a second cleanup has nothing to do.
    again = cnmd("cleanup", *dirs.args(), "--host-id", HOST_ID, env=cnmd_env, netns_name=netns_host)
    assert again.returncode == 0, again.stderr
    start_cnmd(spawn, dirs, netns_host, cnmd_env)
    res = subprocess.run(
        [str(BIN / "cnmctl"), "network", "ls", "--format", "{{.Name}}"],
        capture_output=True, text=True, timeout=30, env={**os.environ, **ctl},
    )  # fmt: skip
    assert sorted(res.stdout.split()) == ["host", "none"], res.stderr
