"""`cnmd cleanup`: remove what a stopped (or dead) cnmd left on this host.

cnmd keeps its kernel state when it stops, so that the next start finds its
networks and sandboxes again. A cnmd that died outside `cnmd stop`, or one
whose user wants to start afresh, leaves namespaces, bridges, veths and
nftables tables that only a running driver could delete through the API.
This runs the driver's own clean-up (`cnm-driver --cleanup`, with the
arguments cnmd would give the driver) and, when cnmd's Redis is its private
one, removes the store as well: otherwise the next start would bring every
network and sandbox back.

Refused while a cnmd runs on the run dir, or while something still answers
on the private Redis' socket: both would re-create what is being removed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from services import healthcheck
from services.cnmd_control import PID_FILE, SERVICES, STATE_FILE, read_state
from services.config import ConfigError

if TYPE_CHECKING:
    from services.cnmd import Plan

# What the private store is made of, under DATA_DIR; logs are kept.
PRIVATE_STATE = ("redis", "driver")


def cleanup(plan: Plan) -> int:
    """0 when everything went, 1 when the driver's clean-up reported errors."""
    if (running := read_state(plan.run_dir)) is not None:
        raise ConfigError(
            f"cnmd (pid {running.get('pid')}) is running with run dir {plan.run_dir}: "
            "stop it first (cnmd stop)"
        )
    if plan.private_redis and healthcheck.probe_redis(plan.redis_url) == healthcheck.SERVING:
        raise ConfigError(
            f"a Redis still answers on {plan.redis_url}, with no cnmd running: "
            "stop that redis-server first"
        )
    driver = next(c for c in plan.children if c.name == "driver")
    # With the private Redis down, the driver cleans the kernel and says so.
    done = subprocess.run([*driver.argv, "--cleanup"], stdin=subprocess.DEVNULL, check=False)
    if plan.private_redis:
        for name in PRIVATE_STATE:
            shutil.rmtree(plan.data_dir / name, ignore_errors=True)
    # The dead cnmd's files: a stale state file would tell `cnmd status` it is ready.
    sockets = [f"{s}.sock" for s in ("redis", *SERVICES) if s != "redis" or plan.private_redis]
    for name in (STATE_FILE, PID_FILE, *sockets):
        (plan.run_dir / name).unlink(missing_ok=True)
    if done.returncode != 0:
        print(
            f"cnmd: cleanup left something behind (see the errors above); logs kept in "
            f"{plan.data_dir / 'log'}",
            file=sys.stderr,
        )
        return 1
    kept = "" if plan.private_redis else f"; records of other hosts in {plan.redis_url} kept"
    print(f"cnmd: removed this host's networks, sandboxes and state{kept}")
    return 0
