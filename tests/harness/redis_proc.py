"""A redis-server a test can kill and start again on the same socket, with or
without persistence (AOF fsync'd every write, so a kill -9 loses nothing), to
play Redis outages and Redis coming back empty."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path


class RedisProcess:
    def __init__(self, *, persistent: bool = True, workdir: Path | None = None) -> None:
        self.binary = shutil.which("redis-server") or "redis-server"
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="cnm-redis-"))
        self.sock = self.workdir / "redis.sock"
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"

    def start(self, *, empty: bool = False) -> RedisProcess:
        """Start (again); `empty` throws away what was persisted first."""
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
        self.proc = subprocess.Popen(
            [self.binary, "--port", "0", "--unixsocket", str(self.sock),
             "--unixsocketperm", "700", "--save", "", *persistence,
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        if not self.sock.exists():
            return False
        res = subprocess.run(
            ["redis-cli", "-s", str(self.sock), "ping"], capture_output=True, text=True, check=False
        )
        return res.stdout.strip() == "PONG"

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
