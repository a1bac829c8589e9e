"""Docker worlds: cnm on a simulated cluster, cnm-docker-plugin and a private
dockerd on each host, shared by every test of a module (a dockerd takes
seconds to start).

    cluster (harness.world.cluster): IPAM, controller; per host a namespace
        with cnm-driver, on an underlay bridge; Redis is the caller's
    per host: cnm-docker-plugin (root namespace: it only talks to the
        controller) on <run>/<host>/plugins/<name>.sock, and dockerd inside
        the host's namespace with that directory as its /run/docker/plugins
        (tests/harness/dockerd.py); <run> is the world's run directory

Traffic stays inside the cluster's namespaces: containers ping each other,
HTTP goes from a host's own namespace to its address or 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from clients.client import Client
from conftest import Spawner
from harness import kernel_snapshot, world
from harness.dockerd import Dockerd
from harness.wait import until

BIN = Path(sys.executable).parent


@dataclass
class Plugin:
    spawn: Spawner
    socket: Path
    argv: list[str]
    proc: object = None

    def start(self, timeout: float = 30) -> Plugin:
        log = open(self.socket.parent.parent / f"{self.socket.stem}.log", "ab")  # noqa: SIM115
        self.proc = self.spawn(self.argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        until(self._answers, f"{self.socket.name} answering Plugin.Activate", timeout=timeout,
              interval=0.05, retry_on=(OSError,))  # fmt: skip
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.socket.name} exited with {self.proc.returncode}")
        return call(self.socket, "Plugin.Activate")[0] == 200

    def kill(self) -> None:
        self.spawn.stop(self.proc, signal.SIGKILL)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def call(sock: Path, method: str, body: object = None) -> tuple[int, dict]:
    """One plugin call as dockerd makes it: POST /<method> with a JSON body."""
    conn = _UnixConnection(sock)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
        conn.request("POST", f"/{method}", data, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


@dataclass
class HostWorld:
    id: str
    netns: str
    address: str
    plugins: dict[str, Plugin] = field(default_factory=dict)
    docker: Dockerd | None = None


class DockerWorld:
    def __init__(self, redis_url: str, netns_prefix: str, *, hosts: int, plugins: dict) -> None:
        """`plugins`: socket name -> extra cnm-docker-plugin arguments, on every host."""
        self.spawn = Spawner()
        self.redis_url = redis_url
        self.netns_prefix = netns_prefix
        self.n_hosts = hosts
        self.cluster: world.World | None = None
        self.plugin_args = plugins
        self.hosts: dict[str, HostWorld] = {}
        self.cnm: Client | None = None

    @property
    def run_dir(self) -> Path:
        assert self.cluster is not None
        return self.cluster.run_dir

    def build(self) -> DockerWorld:
        try:
            self.cluster = world.cluster(
                self.spawn,
                self.redis_url,
                name=f"cnmdk-{kernel_snapshot.TEST_TAG}",
                netns_prefix=self.netns_prefix,
                hosts=self.n_hosts,
                tmp_prefix="cnmdk",
            )
            self.cnm = Client(self.cluster.controller, timeout=30)
            for host in self.cluster.hosts.values():
                hw = HostWorld(host.id, host.netns, host.address)
                self.hosts[host.id] = hw
                home = self.run_dir / host.id
                (home / "plugins").mkdir(parents=True)
                for name, extra in self.plugin_args.items():
                    hw.plugins[name] = self.plugin(host.id, name, *extra).start()
                hw.docker = Dockerd(self.spawn, netns=host.netns, run_dir=home)
            # The daemons start in parallel: a few seconds each.
            errors = []
            threads = [
                _Thread(hw.docker.start) for hw in self.hosts.values() if hw.docker is not None
            ]
            for t in threads:
                t.join()
                if t.error is not None:
                    errors.append(t.error)
            if errors:
                raise errors[0]
        except BaseException:
            self.close()
            raise
        return self

    def plugin(self, host_id: str, name: str, *extra: str) -> Plugin:
        home = self.run_dir / host_id
        sock = home / "plugins" / f"{name}.sock"
        argv = [str(BIN / "cnm-docker-plugin"), "--socket", str(sock),
                "--controller", self.controller, "--host", host_id,
                "--state-dir", str(home / f"state-{name}"), "--log-level", "debug", *extra]  # fmt: skip
        return Plugin(self.spawn, sock, argv)

    @property
    def controller(self) -> str:
        assert self.cluster is not None
        return self.cluster.controller

    def docker(self, host_id: str = "h1") -> Dockerd:
        d = self.hosts[host_id].docker
        assert d is not None
        return d

    def http_get(self, host_id: str, url: str, timeout: float = 30) -> str:
        """GET `url` from the host's own namespace, retried until it answers;
        "ERROR: ..." when it never does."""
        code = (
            "import sys, urllib.request\n"
            "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')"
        )
        last: list[subprocess.CompletedProcess] = []

        def get() -> bool:
            last[:] = [subprocess.run(
                ["nsenter", f"--net=/run/netns/{self.hosts[host_id].netns}", "--",
                 sys.executable, "-c", code, url],
                capture_output=True, text=True, timeout=30,
            )]  # fmt: skip
            return last[0].returncode == 0

        with contextlib.suppress(AssertionError):
            until(get, f"GET {url}", timeout=timeout, interval=0.2)
        r = last[0]
        return r.stdout if r.returncode == 0 else f"ERROR: {r.stderr.strip()[-300:]}"

    def close(self) -> None:
        """Containers and networks through each dockerd, the daemons, then the
        cluster (World.close); every process by PID."""
        errors = []
        for hw in self.hosts.values():
            if hw.docker is not None and hw.docker.proc is not None:
                errors += hw.docker.remove_everything()
        for hw in self.hosts.values():
            if hw.docker is not None:
                hw.docker.stop()
        if self.cnm is not None:
            with contextlib.suppress(Exception):
                self.cnm.close()
        try:
            if self.cluster is not None:
                self.cluster.close()
        finally:
            self.spawn.stop_all()
        if errors:
            raise RuntimeError(f"docker clean-up: {errors}")


class _Thread:
    def __init__(self, fn) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised by the caller
                self.error = e

        self._t = threading.Thread(target=run)
        self._t.start()

    def join(self) -> None:
        self._t.join()
