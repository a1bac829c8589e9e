"""Docker's libnetwork through dockerd's API: POST /networks/{id}/connect and
/disconnect on running containers.

dockerd runs by hand inside Docker's host namespace with its own data-root,
exec-root and a private API socket; no registry is contacted: the one image is
made here (`docker import` of a tarball holding /bin/sleep and its libraries).
Containers are created with NetworkMode = the bench network and one published
port, started (untimed), then disconnected (untimed) so that their namespace
exists and is empty; a timed connect then re-plumbs the port mapping too,
since Docker applies a container's port bindings on its NetworkMode network.
Runs with --userland-proxy=false (NAT rules only, like every other system
here) and vfs storage (no overlay mounts on this machine's /tmp).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from peers import netns
from peers.base import (
    CONTAINER_PORT,
    Container,
    NetworkPlan,
    Skip,
    System,
    pids_under,
    stop_process,
)

log = logging.getLogger(__name__)

IMAGE = "cnmbench:1"
API = "/v1.41"  # Docker 20.10


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=120)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Docker(System):
    name = "docker"
    runner_makes_namespaces = False
    # The network and IPAM drivers the bench networks are made with.
    driver = "bridge"
    ipam_driver = "default"
    # Extra dockerd flags.
    dockerd_flags: tuple[str, ...] = ()

    def before_dockerd(self) -> None:
        """What must run before dockerd starts (nothing for Docker's own drivers)."""

    def dockerd_argv(self, argv: list[str]) -> list[str]:
        """dockerd's command line, inside our host namespace."""
        return netns.in_netns(f"/run/netns/{self.host_ns}", argv)

    def start(self) -> None:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise Skip("dockerd not installed (package docker.io)")
        super().start()
        self.before_dockerd()
        d = self.run_dir
        self.sock = str(d / "docker.sock")
        (d / "daemon.json").write_text("{}")
        self._local = threading.local()
        log_file = open(d / "dockerd.log", "ab")  # noqa: SIM115 - lives with the process
        self.dockerd = subprocess.Popen(
            self.dockerd_argv(
                [dockerd, "--config-file", str(d / "daemon.json"), "--data-root", str(d / "data"),
                 "--exec-root", str(d / "exec"), "--pidfile", str(d / "dockerd.pid"),
                 "-H", f"unix://{self.sock}", "--bridge=none", "--ip6tables=false",
                 "--userland-proxy=false", "--storage-driver=vfs", "--log-level=warn",
                 *self.dockerd_flags],
            ),
            stdout=log_file,
            stderr=log_file,
        )  # fmt: skip
        log_file.close()
        self.procs.append(self.dockerd)
        deadline = time.monotonic() + 60
        while True:
            if self.dockerd.poll() is not None:
                raise Skip(f"dockerd exited with {self.dockerd.returncode}: {self._log_tail()}")
            try:
                if self.request("GET", "/_ping", raw=True) == b"OK":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Skip(f"dockerd not answering after 60 s: {self._log_tail()}")
            time.sleep(0.2)
        self._import_image()
        self.version = self.request("GET", "/version")["Version"]

    def _log_tail(self) -> str:
        lines = (self.run_dir / "dockerd.log").read_text(errors="replace").splitlines()
        return " | ".join(lines[-3:])

    # -------------------------------------------------------------- API

    def request(self, method: str, path: str, body: Any = None, raw: bool = False) -> Any:
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if isinstance(body, bytes):
            headers = {"Content-Type": "application/x-tar"}
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = _UnixConnection(self.sock)
            try:
                conn.request(method, path if path == "/_ping" else API + path, data, headers)
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # A kept-alive connection the daemon closed while idle: once more, anew.
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
            except BaseException:
                # Also on KeyboardInterrupt: a half-used connection must not be
                # reused by the clean-up that follows.
                conn.close()
                self._local.conn = None
                raise
        if resp.status >= 400:
            raise RuntimeError(f"docker {method} {path}: {resp.status} {payload[:300]!r}")
        if raw:
            return payload
        return json.loads(payload) if payload.strip() else None

    def _import_image(self) -> None:
        """An image from this machine's own /bin/sleep: no registry involved."""
        files = ["/bin/sleep"]
        ldd = subprocess.run(["ldd", "/bin/sleep"], capture_output=True, text=True, check=True)
        for line in ldd.stdout.splitlines():
            path = next((p for p in line.split() if p.startswith("/")), None)
            if path:
                files.append(path)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in files:
                tar.add(os.path.realpath(f), arcname=f.lstrip("/"))
        repo, tag = IMAGE.split(":")
        self.request(
            "POST", f"/images/create?fromSrc=-&repo={repo}&tag={tag}", buf.getvalue(), raw=True
        )

    # -------------------------------------------------------------- networks

    def net_name(self, plan: NetworkPlan) -> str:
        return f"{self.tag}-n{plan.index}"

    def create_network(self, plan: NetworkPlan) -> None:
        self.request(
            "POST",
            "/networks/create",
            {
                "Name": self.net_name(plan),
                "Driver": self.driver,
                "CheckDuplicate": True,
                "IPAM": {
                    "Driver": self.ipam_driver,
                    "Config": [{"Subnet": str(plan.subnet), "Gateway": plan.gateway}],
                },
                "Options": {"com.docker.network.bridge.name": f"dkb{plan.index}"},
            },
        )

    def delete_network(self, plan: NetworkPlan) -> None:
        # Right after forced container removals dockerd may still be releasing
        # their endpoints ("has active endpoints"): retried for up to 30 s.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.request("DELETE", f"/networks/{self.net_name(plan)}")
                return
            except RuntimeError as e:
                if "active endpoints" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    # -------------------------------------------------------------- containers

    def _make(self, c: Container) -> None:
        net = self.net_name(self.networks[c.network])
        created = self.request(
            "POST",
            f"/containers/create?name={c.name}",
            {
                "Image": IMAGE,
                "Cmd": ["/bin/sleep", "infinity"],
                # Docker maps only exposed ports (the CLI's -p exposes them implicitly).
                "ExposedPorts": {f"{CONTAINER_PORT}/tcp": {}},
                "HostConfig": {
                    "NetworkMode": net,
                    "PortBindings": {f"{CONTAINER_PORT}/tcp": [{"HostPort": str(c.host_port)}]},
                },
            },
        )
        c.state["id"] = created["Id"]
        self.request("POST", f"/containers/{created['Id']}/start")
        self.request("POST", f"/networks/{net}/disconnect", {"Container": created["Id"]})
        info = self.request("GET", f"/containers/{created['Id']}/json")
        c.path = self.netns_path(info)

    def prepare(self, containers: list[Container]) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self._make, containers))

    def release(self, containers: list[Container]) -> None:
        def remove(c: Container) -> None:
            if "id" in c.state:
                self.request("DELETE", f"/containers/{c.state.pop('id')}?force=1")

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(remove, containers))

    def connect(self, c: Container) -> float:
        net = self.net_name(self.networks[c.network])
        t0 = time.perf_counter()
        self.request("POST", f"/networks/{net}/connect", {"Container": c.state["id"]})
        elapsed = time.perf_counter() - t0
        info = self.request("GET", f"/containers/{c.state['id']}/json")
        settings = info["NetworkSettings"]["Networks"][net]
        c.address, c.gateway = settings["IPAddress"], settings["Gateway"]
        if not self.published(c, info):
            raise RuntimeError(f"{self.name}: {c.name} connected without its published port")
        return elapsed

    def netns_path(self, info: dict[str, Any]) -> str:
        """The container's network namespace, as the runner's checks enter it."""
        return info["NetworkSettings"]["SandboxKey"]

    def published(self, c: Container, info: dict[str, Any]) -> bool:
        """Whether the container's port is published, as Docker reports it."""
        return bool(info["NetworkSettings"]["Ports"].get(f"{CONTAINER_PORT}/tcp"))

    def disconnect(self, c: Container) -> float:
        net = self.net_name(self.networks[c.network])
        t0 = time.perf_counter()
        self.request("POST", f"/networks/{net}/disconnect", {"Container": c.state["id"]})
        return time.perf_counter() - t0

    # -------------------------------------------------------------- teardown

    def stop(self) -> list[str]:
        problems: list[str] = []
        if hasattr(self, "sock") and self.dockerd.poll() is None:
            try:
                for c in self.request("GET", "/containers/json?all=1"):
                    self.request("DELETE", f"/containers/{c['Id']}?force=1")
                self.request("DELETE", f"/images/{IMAGE}?force=1")
            except (OSError, RuntimeError) as e:
                problems.append(f"docker clean-up: {e}")
        problems += stop_process(self.dockerd, grace=30) if hasattr(self, "dockerd") else []
        # containerd and its shims were started by our dockerd: found by our run dir, by PID
        # ("<run_dir>/": the docker-cnm row's directory starts with this one's name), but
        # not what this system started itself (System.stop stops those).
        ours = {p.pid for p in self.procs}
        for pid in set(pids_under(f"{self.run_dir}/")) - ours:
            problems.append(f"{self.name}: pid {pid} still running after dockerd stopped; killed")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        for mount in mounts_under(f"{self.run_dir}/"):
            problems.append(f"{self.name}: {mount} still mounted; unmounted")
            subprocess.run(["umount", "-l", mount], check=False)
        return problems + super().stop()


def mounts_under(path: str) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(path):
            points.append(point)
    return sorted(points, key=len, reverse=True)
