"""The tests' one redis-server starter: a private server on a unix socket,
started through a Spawner (stopped by PID), which a test can kill, freeze and
start again on the same socket, with or without persistence (AOF fsync'd
every write, so a kill -9 loses nothing), to play Redis outages and Redis
coming back empty."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import redis

from harness.spawner import Spawner
from harness.wait import until


class RedisProcess:
    def __init__(
        self,
        spawn: Spawner | None = None,
        *,
        persistent: bool = True,
        workdir: Path | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        """`extra`: more redis-server options (e.g. keyspace notifications)."""
        self.binary = shutil.which("redis-server") or "redis-server"
        self.spawn = spawn if spawn is not None else Spawner()
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="cnm-redis-"))
        self.sock = self.workdir / "redis.sock"
        self.persistent = persistent
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def start(self, *, empty: bool = False) -> RedisProcess:
        """Start (again), returning once it answers PING; `empty` throws away
        what was persisted first."""
        if self.proc is not None:
            raise RuntimeError("redis-server already running")
        if empty:
            for p in self.workdir.iterdir():
                if p.name.startswith(("appendonly", "dump")):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        self.sock.unlink(missing_ok=True)
        self.proc = self.spawn(
            [self.binary, "--port", "0", "--unixsocket", str(self.sock),
             "--unixsocketperm", "700", "--save", "", *persistence,
             "--dir", str(self.workdir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        until(self._answers, "redis-server answering PING", timeout=10, interval=0.02)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
        if not self.sock.exists():
            return False
        client = redis.Redis(unix_socket_path=str(self.sock), socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:  # still loading its data, too
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: an orderly shutdown."""
        if self.proc is not None:
            self.thaw()
            self.spawn.stop(self.proc)
            self.proc = None

    def kill(self) -> None:
        """kill -9: no shutdown save, clients see their connections reset."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: Redis stops answering without restarting (clients time out)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.thaw()
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
