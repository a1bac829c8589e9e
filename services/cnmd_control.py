"""`cnmd --daemon`, `cnmd status` and `cnmd stop`: talking to a running cnmd
through the files in its run dir.

RUN_DIR/cnmd.pid is flock()ed by the running cnmd: a lock held means a live
cnmd, whatever the file says; RUN_DIR/cnmd.json lists its components.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services import healthcheck
from services.config import ConfigError
from services.private_files import open_log
from services.supervisor import Child, ChildSpec, wait_until

if TYPE_CHECKING:
    from services.cnmd import Plan

SERVICES = ("ipam", "controller", "driver", "dns")
PID_FILE = "cnmd.pid"
STATE_FILE = "cnmd.json"
# `cnmd status` exit codes, as an init script's status (LSB): 0 all SERVING,
# 1 running but some component is not SERVING, 3 not running.
STATUS_NOT_SERVING = 1
STATUS_NOT_RUNNING = 3


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """cnmd's state file, or None when no cnmd holds the run dir's lock."""
    pid_path = run_dir / PID_FILE
    try:
        fd = os.open(pid_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # we got the lock: nobody runs there (a stale pid file)
    except BlockingIOError:
        # Read through the open fd: a cnmd shutting down unlinks the pid and
        # state files while it still holds the lock.
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    finally:
        os.close(fd)
    try:
        return json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {"pid": int(pid) if pid.isdigit() else None, "ready": False, "components": []}


def daemonize(plan: Plan, argv: list[str]) -> int:
    """Starts cnmd in the background; returns once it is SERVING (0) or has failed."""
    if (other := read_state(plan.run_dir)) is not None:
        raise ConfigError(
            f"another cnmd (pid {other.get('pid')}) is running with run dir {plan.run_dir}"
        )
    log_path = plan.data_dir / "log" / "cnmd.log"
    child_argv = [a for a in argv if a != "--daemon"]
    with open_log(log_path) as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cnmd", *child_argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + plan.cfg.start_timeout + 5
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            last = Child(ChildSpec("cnmd", (), log_path, "")).last_log_line()
            print(last or f"cnmd: exited with {proc.returncode}", file=sys.stderr)
            return proc.returncode or 1
        state = read_state(plan.run_dir)
        if state and state.get("pid") == proc.pid and state.get("ready"):
            print(f"cnmd started (pid {proc.pid}); run dir {plan.run_dir}, logs {log_path.parent}")
            return 0
        time.sleep(0.1)
    print(
        f"cnmd: started (pid {proc.pid}) but not all components are SERVING after "
        f"{plan.cfg.start_timeout:.0f}s: see `cnmd status --run-dir {plan.run_dir}` and "
        f"{log_path.parent}",
        file=sys.stderr,
    )
    return 1


def status(run_dir: Path) -> int:
    state = read_state(run_dir)
    if state is None:
        print(f"cnmd: not running (run dir {run_dir})")
        return STATUS_NOT_RUNNING
    rows = []
    for comp in state.get("components", []):
        if comp["name"] == "redis":
            health = healthcheck.probe_redis(comp["address"])
        else:
            health = healthcheck.probe_grpc(comp["address"])
        pid = "external" if comp.get("external") else f"pid {comp.get('pid') or '-'}"
        rows.append((comp["name"], comp["address"], health, pid, comp.get("restarts", 0)))
    print(
        f"cnmd version {state.get('version', 'unknown')}, pid {state.get('pid')}, run dir {run_dir}"
    )
    width = max((len(r[1]) for r in rows), default=0)
    for name, address, health, pid, restarts in rows:
        print(f"{name:<11} {health:<12} {address:<{width}}  {pid:<10} restarts {restarts}")
    ok = rows and len(rows) == 1 + len(SERVICES) and all(r[2] == healthcheck.SERVING for r in rows)
    return 0 if ok else STATUS_NOT_SERVING


def stop(run_dir: Path, timeout: float = 20.0) -> int:
    state = read_state(run_dir)
    if state is None or not state.get("pid"):
        print(f"cnmd: not running (run dir {run_dir})")
        return 0
    pid = int(state["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_until(lambda: read_state(run_dir) is None, timeout, 0.1):
        print(f"cnmd (pid {pid}) stopped")
        return 0
    print(f"cnmd: pid {pid} did not stop within {timeout:.0f}s", file=sys.stderr)
    return 1
