"""A simulated cluster for a shell (scripts/cluster-demo.sh), built by harness.world.

    python tests/harness/cluster.py up --dir DIR --hosts 3 [--name cnmdemo] [--redis-url URL]
    python tests/harness/cluster.py down --dir DIR

`up` builds world.cluster(): N hosts as namespaces "<name>-hN" on an underlay
bridge (namespace "<name>-ul", 192.0.2.0/24), each running cnm-driver with
`--advertise-addr`, and Redis (a private one unless `--redis-url`), IPAM and a
controller on unix sockets in DIR. Its processes outlive the command: their
PIDs, the hosts and the namespaces are written to DIR/cluster.json. `down`
tears down exactly what that file lists: what was made through the API, then
the processes by PID, then `cnm-driver --cleanup` on every host and the
namespaces (World.close).

Tests build their clusters with harness.world.cluster directly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `harness` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import netns  # noqa: E402
from harness.redis_proc import RedisProcess  # noqa: E402
from harness.spawner import Spawner, program  # noqa: E402
from harness.wait import eventually  # noqa: E402
from harness.world import Host, World, cluster  # noqa: E402

STATE_FILE = "cluster.json"
UNDERLAY = "192.0.2.0/24"


def state(spawn: Spawner, name: str, redis_url: str, world: World | None) -> dict:
    """What `down` needs: the namespaces, the controller and every live PID."""
    return {
        "name": name,
        "netns_prefix": f"{name}-",
        "redis_url": redis_url,
        "underlay": UNDERLAY,
        "controller": world.controller if world else "",
        "hosts": {
            h.id: {"netns": h.netns, "address": h.address, "port": h.port, "driver": h.driver}
            for h in (world.hosts.values() if world else ())
        },
        "procs": [
            {"pid": p.pid, "argv0": program(p.args)} for p in spawn.procs if p.poll() is None
        ],
    }


def _ours(pid: int, argv0: str) -> bool:
    """True when `pid` still runs the program we started (not a reused PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    # redis-server rewrites its command line ("redis-server unixsocket:..."): a substring test.
    return argv0.encode() in cmdline


def _stop_pid(pid: int, argv0: str, timeout: float = 5) -> None:
    if not _ours(pid, argv0):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not eventually(lambda: not _ours(pid, argv0), timeout=timeout, interval=0.05):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cmd_up(args: argparse.Namespace) -> int:
    run_dir = Path(args.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spawn = Spawner(log_dir=run_dir)
    write = lambda s: (run_dir / STATE_FILE).write_text(json.dumps(s, indent=2))  # noqa: E731
    try:
        # A private Redis with default notification settings (none): the overlay
        # must work with a plain Redis.
        redis_url = (
            args.redis_url or RedisProcess(spawn, persistent=False, workdir=run_dir).start().url
        )
        # Written before the cluster is built: `down` can always stop this Redis.
        write(state(spawn, args.name, redis_url, None))
        # On failure the world removes what it made before the error propagates.
        world = cluster(spawn, redis_url, name=args.name, netns_prefix=f"{args.name}-",
                        hosts=args.hosts, run_dir=run_dir)  # fmt: skip
    except BaseException:
        spawn.stop_all()
        (run_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    write(state(spawn, args.name, redis_url, world))
    print(json.dumps(state(spawn, args.name, redis_url, world), indent=2))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    run_dir = Path(args.dir)
    path = run_dir / STATE_FILE
    if not path.exists():
        return 0
    s = json.loads(path.read_text())
    world = World(Spawner(), s["redis_url"], s["netns_prefix"], name=s["name"], run_dir=run_dir,
                  underlay=s.get("underlay", UNDERLAY), sweep=True)  # fmt: skip
    for host_id, h in s.get("hosts", {}).items():
        world.hosts[host_id] = Host(host_id, h["netns"], owned=True, address=h["address"],
                                    port=h.get("port", ""))  # fmt: skip
    controller = s.get("controller", "")
    if controller and Path(controller.removeprefix("unix://")).exists():
        world.controllers["controller"] = controller  # started by `up`: taken as live
        with contextlib.suppress(Exception):
            world.delete_everything()
    # Drivers, controller, IPAM, then Redis: the reverse of their start.
    for proc in reversed(s.get("procs", [])):
        _stop_pid(proc["pid"], proc["argv0"])
    netns.delete(world.underlay_ns)
    try:
        world.close(through_api=False)
    except RuntimeError as e:
        print(f"cluster down: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cluster.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build a cluster whose processes outlive this command")
    up.add_argument("--dir", required=True, help="run directory (sockets, logs, cluster.json)")
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument("--name", default="cnmdemo", help="prefix of every namespace made")
    up.add_argument("--redis-url", default="", help="use this Redis instead of starting one")
    down = sub.add_parser("down", help="tear down what `up --dir DIR` built")
    down.add_argument("--dir", required=True)
    args = p.parse_args(argv)
    return cmd_up(args) if args.cmd == "up" else cmd_down(args)


if __name__ == "__main__":
    raise SystemExit(main())
