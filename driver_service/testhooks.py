"""Test hooks: crash points, and a wrong clock.

`CNM_TEST_CRASH_AT=<name>` makes the process die there.

Only when the variable is set (tests set it on a driver service they start);
the process exits with 137 like a SIGKILL, without unwinding anything, so a
test can check that a restart finishes or undoes the half-done work.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)

# Seconds added to this process's idea of the wall clock (a host whose clock is
# off); only what cnm compares across hosts reads it (the heartbeat).
CLOCK_OFFSET_ENV = "CNM_TEST_CLOCK_OFFSET"

CRASH_ENV = "CNM_TEST_CRASH_AT"
AFTER_VETH = "after_veth"
# Join: host ports allocated in Redis, nothing in the kernel yet.
AFTER_PORTS = "after_ports"
# Join: the port map elements are in the kernel, the record still says "joining".
AFTER_PUBLISH = "after_publish"


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        log.warning("test hook %s=%s: exiting now", CRASH_ENV, name)
        logging.shutdown()
        os._exit(137)


def wallclock() -> float:
    """time.time(), shifted by CNM_TEST_CLOCK_OFFSET when a test sets it."""
    offset = os.environ.get(CLOCK_OFFSET_ENV)
    return time.time() + (float(offset) if offset else 0.0)
