"""Child processes of cnmd: start, watch, restart with back-off, stop by PID.

Each child runs in its own session (so a Ctrl-C in cnmd's terminal reaches
only cnmd, which then stops the children in order), with its output appended
to its own log file, and, where util-linux's `setpriv` exists, with a parent
death signal: if cnmd itself is SIGKILLed its children get SIGTERM instead of
living on as orphans.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from services.private_files import open_log

log = logging.getLogger(__name__)

# Back-off between restarts of a child that keeps dying: 0.5 s, 1 s, 2 s ... 30 s.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
# A child that stayed up this long is healthy again: its back-off starts over.
STABLE_AFTER = 30.0


@dataclass(frozen=True)
class ChildSpec:
    name: str  # "redis", "ipam", "controller", "driver"
    argv: tuple[str, ...]
    log_path: Path
    # What health probes: a gRPC address, or the Redis URL for redis.
    address: str
    env: dict[str, str] = field(default_factory=dict)


class Child:
    """One supervised process and its restart bookkeeping."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.failures = 0  # consecutive short-lived runs, for the back-off
        self.next_start = 0.0
        self.ever_serving = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and not _is_zombie(self.pid)

    def start(self) -> None:
        argv = list(self.spec.argv)
        setpriv = shutil.which("setpriv")
        if setpriv:
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        with open_log(self.spec.log_path) as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.spec.env},
                start_new_session=True,
                close_fds=True,
            )
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    def exited(self) -> int | None:
        """The exit code if the process has ended (it is then reaped), else None.

        Its process group is killed first, while the dead leader is still a
        zombie holding the id, so the group id cannot have been reused.
        """
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            if not _is_zombie(self.proc.pid):
                return None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()

    def schedule_restart(self, now: float) -> float:
        """Records a death; returns the delay before the next start."""
        if now - self.started_at >= STABLE_AFTER:
            self.failures = 0
        delay = min(BACKOFF_FIRST * (2**self.failures), BACKOFF_MAX)
        self.failures += 1
        self.restarts += 1
        self.next_start = now + delay
        self.proc = None
        return delay

    def last_log_line(self) -> str:
        """The last non-empty line of the child's log: its one-line error, if it wrote one."""
        try:
            with open(self.spec.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 4096))
                lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""


def stop_children(children: Sequence[Child], grace: float) -> None:
    """SIGTERM all of `children` at once, SIGKILL what is left after `grace` seconds.

    Each child's whole process group is killed as it ends, so nothing a child
    started survives it.
    """
    live = [c for c in children if c.running()]
    for child in live:
        assert child.proc is not None
        with contextlib.suppress(ProcessLookupError):
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in live:
        assert child.proc is not None
        if not wait_until(partial(_is_zombie, child.pid), max(0.0, deadline - time.monotonic())):
            log.warning(
                "%s (pid %d) ignored SIGTERM for %.1fs: SIGKILL", child.name, child.pid, grace
            )
            child.proc.kill()
        code = child.exited() if wait_until(partial(_is_zombie, child.pid), 5) else None
        log.info("stopped %s (pid %d, exit %s)", child.name, child.proc.pid, code)


def _is_zombie(pid: int | None) -> bool:
    """True once child `pid` has exited; it is left unreaped (WNOWAIT)."""
    if pid is None:
        return True
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True  # already reaped
    return info is not None


def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
