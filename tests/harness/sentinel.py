"""A Redis high-availability set for tests: one primary, replicas and
sentinels, each a redis-server started through the test's `spawn` fixture
(stopped by PID afterwards), on 127.0.0.1 inside a network namespace the test
made (`netns`): services that use the set run in that namespace too, so no
TCP port is opened in the machine's own namespace."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.wait import until

SERVICE = "cnmha"


@dataclass
class SentinelSet:
    spawn: object
    workdir: Path
    netns: str
    servers: dict[int, subprocess.Popen] = field(default_factory=dict)
    sentinels: dict[int, subprocess.Popen] = field(default_factory=dict)
    # The namespace is the test's own: any fixed ports are free in it.
    _ports: itertools.count = field(default_factory=lambda: itertools.count(7001))

    def start(self, replicas: int = 2, sentinels: int = 3) -> None:
        primary = self._server()
        for _ in range(replicas):
            self._server(replica_of=primary)
        for _ in range(sentinels):
            self._sentinel(primary)
        until(
            lambda: all(len(self._known_replicas(p)) >= replicas for p in self.sentinels),
            "sentinels know every replica",
            timeout=30,
        )

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def primary_port(self) -> int:
        for port in self.sentinels:
            out = self.cli(port, "SENTINEL", "get-master-addr-by-name", SERVICE).split()
            if len(out) == 2:
                return int(out[1])
        raise RuntimeError("no sentinel names a primary")

    def cli(self, port: int, *args: str) -> str:
        """redis-cli against `port` in the set's namespace; its output ('' on failure)."""
        res = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.netns}", "redis-cli", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return res.stdout.strip() if res.returncode == 0 else ""

    def kill_primary(self) -> int:
        """kill -9 of the current primary; its port."""
        port = self.primary_port()
        self.spawn.stop(self.servers[port], sig=9)
        return port

    # ------------------------------------------------------------------ internals

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        return self.spawn(
            ["nsenter", f"--net=/run/netns/{self.netns}", *argv], stdout=subprocess.DEVNULL
        )

    def _server(self, replica_of: int = 0) -> int:
        port = next(self._ports)
        data = self.workdir / f"redis-{port}"
        data.mkdir(parents=True)
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--repl-diskless-sync-delay", "0"]  # fmt: skip
        if replica_of:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.servers[port] = self._spawn(argv)
        self._wait_ping(port)
        return port

    def _sentinel(self, primary: int) -> int:
        port = next(self._ports)
        conf = self.workdir / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.sentinels[port] = self._spawn(["redis-server", str(conf), "--sentinel"])
        self._wait_ping(port)
        return port

    def _known_replicas(self, sentinel_port: int) -> list[str]:
        out = self.cli(sentinel_port, "SENTINEL", "replicas", SERVICE)
        return [line for line in out.splitlines() if line == "name"]

    def _wait_ping(self, port: int) -> None:
        until(lambda: self.cli(port, "PING") == "PONG", f"redis on port {port}", timeout=10)
