"""cnmd: the all-in-one launcher of one host (DESIGN.md, command-line contract).

    cnmd [--config FILE] [--run-dir DIR] [--data-dir DIR] [--redis-url URL] [--host-id ID]
         [--daemon] [--log-level L] [--log-format json|text]
    cnmd status [--run-dir DIR]    exit 0: all SERVING, 1: some not SERVING, 3: not running
    cnmd stop   [--run-dir DIR]    exit 0 also when cnmd was not running
    cnmd cleanup [--config FILE] [--run-dir DIR] [--data-dir DIR] [--redis-url URL] [--host-id ID]
                                   remove what a stopped cnmd left (services/cnmd_cleanup.py)

Starts a private redis-server (unless a Redis URL is given) and cnm-ipam,
cnm-controller, cnm-driver and cnm-dns as child processes on unix sockets in the run
dir, waits until each is SERVING, restarts a child that dies, and on
SIGTERM/SIGINT (or `cnmd stop`) stops the services, then Redis, by PID.

Files: RUN_DIR/{redis,ipam,controller,driver,dns}.sock, RUN_DIR/cnmd.pid (locked
while cnmd runs), RUN_DIR/cnmd.json (components, PIDs, readiness: what
`cnmd status` reads); DATA_DIR/redis (append-only file), DATA_DIR/driver
(sandbox files), DATA_DIR/log/<component>.log.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from services import healthcheck
from services.address import parse_address
from services.cnmd_cleanup import cleanup
from services.cnmd_control import PID_FILE, SERVICES, STATE_FILE, daemonize, status, stop
from services.config import ConfigError, load
from services.logsetup import setup_logging
from services.private_files import PRIVATE_UMASK, open_private, private_dir
from services.redis_url import check as redis_url_check
from services.supervisor import Child, ChildSpec, stop_children, wait_until
from services.version import version, version_line

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CnmdConfig:
    """cnmd's keys: top level of the TOML file (run_dir, data_dir, redis_url,
    log_*) or its [cnmd] section; CNM_<KEY> in the environment; flags."""

    run_dir: str = "/run/cnm"
    data_dir: str = "/var/lib/cnm"
    # Empty: cnmd runs its own redis-server on RUN_DIR/redis.sock.
    redis_url: str = ""
    # Empty: the machine's hostname.
    host_id: str = ""
    log_level: str = "info"
    log_format: str = "text"
    redis_server: str = "redis-server"
    # Where the cnm-* console scripts are; empty: next to this Python.
    bin_dir: str = ""
    start_timeout: float = 30.0
    # Per stage (services, then Redis): SIGTERM, then SIGKILL after this long.
    stop_grace: float = 2.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, exit 2, like every configuration error.
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="cnmd", description="Run Redis + cnm-ipam + cnm-controller + cnm-driver + cnm-dns."
    )
    common = _Parser(add_help=False)  # same class as the subparsers it is a parent of
    common.add_argument("--config", metavar="FILE", help="TOML configuration file")
    common.add_argument("--run-dir", metavar="DIR", help="sockets and pid file (/run/cnm)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--run-dir", metavar="DIR", help="sockets and pid file (default /run/cnm)")
    p.add_argument("--data-dir", metavar="DIR", help="Redis data, sandbox files, logs")
    p.add_argument("--redis-url", metavar="URL", help="use this Redis instead of a private one")
    p.add_argument("--host-id", metavar="ID", help="this host's id (default: hostname)")
    p.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log level (info)"
    )
    p.add_argument("--log-format", choices=["json", "text"], help="log line format (json)")
    p.add_argument("-v", "--version", action="version", version=version_line("cnmd"))
    p.add_argument(
        "--daemon",
        action="store_true",
        help="run in the background (logs in DATA_DIR/log); return once all are SERVING",
    )
    sub = p.add_subparsers(dest="command", metavar="{status,stop,cleanup}")
    commands = (
        ("status", "health of each component"),
        ("stop", "stop a running cnmd"),
        ("cleanup", "remove the networks, sandboxes and state a stopped cnmd left"),
    )
    for name, text in commands:
        sp = sub.add_parser(name, help=text, parents=[common], argument_default=argparse.SUPPRESS)
        sp.error = p.error  # type: ignore[method-assign]
        if name == "cleanup":
            # The settings that say where the driver's state is.
            sp.add_argument("--data-dir", metavar="DIR", help="Redis data, sandbox files, logs")
            sp.add_argument("--redis-url", metavar="URL", help="the Redis cnmd was given")
            sp.add_argument("--host-id", metavar="ID", help="this host's id (default: hostname)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = {
        k: v
        for k, v in vars(args).items()
        if k not in ("config", "command", "daemon") and v is not None
    }
    try:
        cfg = load(CnmdConfig, section="cnmd", file=getattr(args, "config", None), flags=flags)
        if args.command == "status":
            return status(Path(cfg.run_dir).absolute())
        if args.command == "stop":
            return stop(Path(cfg.run_dir).absolute())
        plan = Plan.build(cfg, getattr(args, "config", None), flags)
        if args.command == "cleanup":
            return cleanup(plan)
        if args.daemon:
            return daemonize(plan, list(argv if argv is not None else sys.argv[1:]))
        return Cnmd(plan).run()
    except ConfigError as e:
        print(f"cnmd: error: {e}", file=sys.stderr)
        return 2


# --- plan: validated paths and child command lines -------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    cfg: CnmdConfig
    run_dir: Path
    data_dir: Path
    redis_url: str
    private_redis: bool
    children: tuple[ChildSpec, ...]

    @staticmethod
    def build(cfg: CnmdConfig, config_file: str | None, flags: dict[str, Any]) -> Plan:
        """Checks everything that can be checked before a process starts (ConfigError)."""
        run_dir = Path(cfg.run_dir).absolute()
        data_dir = Path(cfg.data_dir).absolute()
        addrs = {name: f"unix://{run_dir}/{name}.sock" for name in ("redis", *SERVICES)}
        for addr in addrs.values():
            try:
                parse_address(addr)
            except ValueError as e:
                raise ConfigError(f"run dir {run_dir}: socket {addr}: {e}") from None
        private = not cfg.redis_url
        redis_url = addrs["redis"] if private else cfg.redis_url
        if not private:
            try:
                redis_url_check(redis_url)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        bin_dir = Path(cfg.bin_dir) if cfg.bin_dir else Path(sys.executable).parent
        scripts = {name: bin_dir / f"cnm-{name}" for name in SERVICES}
        for path in scripts.values():
            if not os.access(path, os.X_OK):
                raise ConfigError(f"{path}: not found (install cnm: scripts/setup.sh)")
        redis_bin = _which(cfg.redis_server) if private else ""
        host_id = cfg.host_id or socket.gethostname()
        # Directories last: a rejected configuration creates nothing.
        # Private (0700): sockets, state, Redis' data and logs are all cnm knows.
        marks = {run_dir: (PID_FILE, STATE_FILE), data_dir: ("redis", "log", "driver")}
        for label, path in (("run dir", run_dir), ("data dir", data_dir)):
            try:
                private_dir(path, marks=marks[path])
            except OSError as e:
                raise ConfigError(f"{label} {path}: cannot create: {e.strerror}") from None
            if not os.access(path, os.W_OK | os.X_OK):
                raise ConfigError(f"{label} {path}: not writable")

        logs = data_dir / "log"
        common = ["--redis-url", redis_url]
        if config_file:
            common += ["--config", str(Path(config_file).absolute())]
        # Only what the user set on cnmd's command line overrides the children's
        # own configuration ([ipam], [driver] ... sections, CNM_* variables).
        for key in ("log_level", "log_format"):
            if key in flags:
                common += [f"--{key.replace('_', '-')}", str(flags[key])]
        extra = {
            "ipam": [],
            # Docker's `host` and `none` networks exist from the first start.
            "controller": ["--ipam", addrs["ipam"], "--builtin-networks"],
            "driver": ["--host-id", host_id, "--state-dir", str(data_dir / "driver")],
            # The resolver serves this host's sandboxes (127.0.0.11 inside each).
            "dns": ["--host-id", host_id],
        }
        children = []
        if private:
            children.append(
                ChildSpec(
                    "redis",
                    (
                        redis_bin,
                        "--port",
                        "0",
                        "--unixsocket",
                        str(run_dir / "redis.sock"),
                        "--unixsocketperm",
                        "600",
                        "--dir",
                        str(data_dir / "redis"),
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "everysec",
                        # The append-only file is the persistence; no RDB snapshots.
                        "--save",
                        "",
                        "--daemonize",
                        "no",
                        "--logfile",
                        "",
                    ),  # fmt: skip
                    logs / "redis.log",
                    redis_url,
                )
            )
        for name in SERVICES:
            children.append(
                ChildSpec(
                    name,
                    (str(scripts[name]), "--listen", addrs[name], *common, *extra[name]),
                    logs / f"{name}.log",
                    addrs[name],
                )
            )
        return Plan(cfg, run_dir, data_dir, redis_url, private, tuple(children))


def _which(binary: str) -> str:
    import shutil

    found = shutil.which(binary)
    if not found:
        raise ConfigError(f"{binary}: not found (install redis-server, or give --redis-url)")
    return found


# --- the supervisor ---------------------------------------------------------------------------


class Cnmd:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.children = [Child(spec) for spec in plan.children]
        self.stopping = threading.Event()
        self.ready = False
        self.lock_fd = -1
        self.fatal = ""

    def run(self) -> int:
        # Every file cnmd, Redis (the append-only file) and the services create is
        # private; the sandboxes' hosts/resolv.conf set their own mode (0644).
        os.umask(PRIVATE_UMASK)
        self._lock()  # ConfigError when another cnmd owns the run dir
        setup_logging("cnmd", self.plan.cfg.log_level, self.plan.cfg.log_format)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda s, _f: self.stopping.set())
        try:
            code = self._supervise()
        finally:
            self._shutdown()
        if self.fatal:
            # Last, after the shutdown log: the one line a user needs.
            print(f"cnmd: error: {self.fatal}", file=sys.stderr)
        return code

    def _lock(self) -> None:
        """Takes the run dir's pid file lock: ConfigError when another cnmd holds it."""
        path = self.plan.run_dir / PID_FILE
        fd = open_private(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode().strip() or "?"
            os.close(fd)
            raise ConfigError(
                f"another cnmd (pid {other}) is running with run dir {self.plan.run_dir}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.lock_fd = fd
        if self.plan.private_redis:
            sock = self.plan.run_dir / "redis.sock"
            if healthcheck.probe_redis(self.plan.redis_url, 1.0) == healthcheck.SERVING:
                raise ConfigError(f"a redis-server not started by this cnmd is serving at {sock}")
            sock.unlink(missing_ok=True)
            private_dir(self.plan.data_dir / "redis")

    def _supervise(self) -> int:
        log.info(
            "starting in %s (data %s, redis %s%s)",
            self.plan.run_dir,
            self.plan.data_dir,
            self.plan.redis_url,
            "" if self.plan.private_redis else ", external",
        )
        redis = self._child("redis")
        if redis is not None:
            redis.start()
            self._write_state()
            if not wait_until(
                lambda: (
                    self.stopping.is_set()
                    or not redis.running()
                    or healthcheck.probe_redis(self.plan.redis_url, 0.5) == healthcheck.SERVING
                ),
                timeout=self.plan.cfg.start_timeout,
            ) or (redis.exited() is not None):
                log.error("redis-server did not start: %s", redis.last_log_line())
                return 1
        for child in self.children:
            if child.name != "redis":
                child.start()
        self._write_state()
        started = time.monotonic()
        warned = False
        while not self.stopping.is_set():
            now = time.monotonic()
            for child in self.children:
                if child.proc is not None and (code := child.exited()) is not None:
                    line, pid = child.last_log_line(), child.pid
                    if code == 2 and not child.ever_serving:
                        # A service refusing its configuration: restarting cannot help.
                        log.error("%s: bad configuration: %s", child.name, line)
                        self.fatal = line
                        return 2
                    delay = child.schedule_restart(now)
                    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
                    log.warning(
                        "%s (pid %s) died (%s); restarting in %.1fs (last log line: %s)",
                        child.name,
                        pid,
                        how,
                        delay,
                        line,
                    )
                    self._write_state()
                elif child.proc is None and now >= child.next_start and child.next_start:
                    child.start()
                    self._write_state()
            if not self.ready:
                self._check_ready()
                if not self.ready and not warned and now - started > self.plan.cfg.start_timeout:
                    warned = True
                    log.warning(
                        "not all components SERVING after %.0fs: %s",
                        self.plan.cfg.start_timeout,
                        ", ".join(f"{c.name} {s}" for c, s in self._probe_all()),
                    )
            self.stopping.wait(0.2)
        log.info("stopping")
        return 0

    def _child(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    def _probe_all(self) -> list[tuple[Child, str]]:
        out = []
        for child in self.children:
            if child.name == "redis":
                out.append((child, healthcheck.probe_redis(child.spec.address, 0.5)))
            else:
                out.append((child, healthcheck.probe_grpc(child.spec.address, timeout=0.5)))
        return out

    def _check_ready(self) -> None:
        statuses = self._probe_all()
        for child, st in statuses:
            if st == healthcheck.SERVING:
                child.ever_serving = True
        if all(st == healthcheck.SERVING for _, st in statuses):
            self.ready = True
            log.info("all components SERVING")
            self._write_state()

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "version": version(),
            "ready": self.ready,
            "run_dir": str(self.plan.run_dir),
            "data_dir": str(self.plan.data_dir),
            "redis_url": self.plan.redis_url,
            "private_redis": self.plan.private_redis,
            "components": [
                {
                    "name": "redis",
                    "address": self.plan.redis_url,
                    "pid": (r.pid if (r := self._child("redis")) else None),
                    "restarts": r.restarts if r else 0,
                    "external": not self.plan.private_redis,
                }
            ]
            + [
                {"name": c.name, "address": c.spec.address, "pid": c.pid, "restarts": c.restarts}
                for c in self.children
                if c.name != "redis"
            ],
        }
        path = self.plan.run_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(path)

    def _shutdown(self) -> None:
        services = [c for c in self.children if c.name != "redis"]
        stop_children(services, self.plan.cfg.stop_grace)
        stop_children([c for c in self.children if c.name == "redis"], self.plan.cfg.stop_grace)
        # A child killed before it could remove its own socket (SIGTERM while it
        # was still starting, or SIGKILL) leaves the file: this run dir is ours.
        sockets = [f"{c.name}.sock" for c in self.children]
        for name in (*sockets, STATE_FILE, PID_FILE):
            (self.plan.run_dir / name).unlink(missing_ok=True)
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
        log.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
