"""Remote-plugin worlds: the test plugin (tests/plugins/netplugin.py) in a temp
plugin dir, and a harness.world.World whose driver and IPAM services look there.

Plugins run inside the test host's namespace (their links are made there) and
are stopped by PID (`spawn`); their sockets live in a short temp dir given to
the services as CNM_PLUGIN_DIRS, never in /run/docker/plugins.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import Spawner
from harness import stack
from harness.wait import until
from harness.world import FAST_FAILOVER, World

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "netplugin.py"


class Plugin:
    """One test plugin process: started, killed, restarted; its request log read."""

    def __init__(self, spawn, plugin_dir: Path, name: str, host_netns: str, *args: str) -> None:
        self.spawn = spawn
        self.name = name
        self.host_netns = host_netns
        self.args = list(args)
        self.socket = plugin_dir / f"{name}.sock"
        self.log = plugin_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"plugin {self.name} exited with {self.proc.returncode}")
        return self.socket.exists()

    def start(self, *, wait: bool = True) -> Plugin:
        argv = [sys.executable, str(PLUGIN), "--socket", str(self.socket), "--log", str(self.log)]
        # A killed plugin leaves its socket file: wait for the new one, not that.
        self.socket.unlink(missing_ok=True)
        self.proc = self.spawn(
            ["nsenter", f"--net=/run/netns/{self.host_netns}", "--", *argv, *self.args]
        )
        if wait:
            until(self._listening, f"plugin {self.name} listening", interval=0.02)
        return self

    def kill(self) -> None:
        """kill -9: the socket file stays behind, as after a real crash."""
        assert self.proc is not None
        self.spawn.stop(self.proc, signal.SIGKILL)

    def requests(self, method: str | None = None) -> list[dict]:
        if not self.log.exists():
            return []
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [e for e in entries if method is None or e["method"] == method]

    def bodies(self, method: str) -> list[dict]:
        return [e["body"] for e in self.requests(method)]

    def methods(self) -> list[str]:
        return [e["method"] for e in self.requests()]

    def mark(self) -> int:
        """The number of requests so far; `since(mark)` gives the ones after."""
        return len(self.requests())

    def since(self, mark: int) -> list[str]:
        return self.methods()[mark:]


@contextmanager
def remote_world(
    redis_server: str,
    netns_prefix: str,
    plugins: list[tuple[str, list[str]]],
    *,
    ipam_plugins: bool = False,
    driver_args: list[str] | None = None,
) -> Iterator[tuple[World, dict[str, Plugin], Path]]:
    """A module-scoped world (harness.world.World): redis flushed, one host "h1"
    (a namespace the world makes) with the given plugins running in it, IPAM
    (looking in the plugin dir when `ipam_plugins`), h1's driver service
    (always looking there) and a controller."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    spawn = Spawner()
    plugin_dir = stack.short_tmp("cnmp")
    env = {"CNM_PLUGIN_DIRS": str(plugin_dir)}
    w = World(spawn, redis_server, netns_prefix, tmp_prefix="cnmrw", controller_env=FAST_FAILOVER)
    try:
        w.add_host("h1", start=False, env=env, extra=driver_args)
        started = {
            name: Plugin(spawn, plugin_dir, name, w.hosts["h1"].netns, *args).start()
            for name, args in plugins
        }
        w.start_ipam(env if ipam_plugins else None, address_spaces=False)
        w.start_host("h1")
        w.start_controller()
        yield w, started, plugin_dir
    finally:
        try:
            w.close()  # through the API while the plugins still answer
        finally:
            spawn.stop_all()
            shutil.rmtree(plugin_dir, ignore_errors=True)
