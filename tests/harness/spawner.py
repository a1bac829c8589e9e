"""The one process spawner of the tests: starts processes in their own
session and stops exactly those, by PID (never by name).

Used as the `spawn` fixture (tests/conftest.py), by module-scoped worlds,
and by the harness's CLI mode (`log_dir`: the processes outlive this Python
process and write to <log_dir>/<program>.log instead of the caller's output).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def program(argv: list[str]) -> str:
    """The program a command line runs: the cnm service behind `nsenter ... --`."""
    names = [os.path.basename(str(a)) for a in argv]
    return next((n for n in names if n.startswith(("cnm-", "redis-server"))), names[0])


class Spawner:
    """Starts processes for a test and stops exactly those, by PID."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self.procs: list[subprocess.Popen] = []
        self.log_dir = log_dir

    def __call__(
        self,
        argv: list[str],
        *,
        netns_name: str | None = None,
        env: dict[str, str] | None = None,
        **kw,
    ) -> subprocess.Popen:
        if netns_name:
            argv = ["ip", "netns", "exec", netns_name, *argv]
        if self.log_dir is not None:
            name = program(argv)
            if "--host-id" in argv:
                name += "-" + argv[argv.index("--host-id") + 1]
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - kept by the child
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
            kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(
            argv, env={**os.environ, **(env or {})}, start_new_session=True, **kw
        )
        self.procs.append(proc)
        return proc

    def stop(
        self,
        proc: subprocess.Popen,
        sig: int = signal.SIGTERM,
        timeout: float = 5,
        *,
        group: bool = False,
    ) -> None:
        """`sig`, then SIGKILL after `timeout`; `group`: to its whole process
        group (its own session: everything it started and did not move)."""
        if proc.poll() is None:
            send = (lambda s: os.killpg(proc.pid, s)) if group else proc.send_signal
            send(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                send(signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
