"""Flushing conntrack entries of addresses that left, off the caller's path.

After a Leave, flows of the endpoint's address must not survive: a stale UDP
entry (e.g. a DNAT for a published port, or a masqueraded flow) would keep
steering packets of the next owner of that address. Entries are deleted by
the `conntrack` tool (argv, never a shell) on one background thread, so a
Leave does not wait for a fork and exec; `wait_idle` lets shutdown and tests
wait for it.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import subprocess
import threading
from collections import deque

log = logging.getLogger(__name__)

_TIMEOUT = 10.0


class ConntrackFlusher:
    def __init__(self) -> None:
        self._binary = shutil.which("conntrack")
        self._queue: deque[str] = deque()
        self._cv = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None
        if self._binary is None:
            log.warning("conntrack tool not found: entries of departed endpoints are not flushed")

    def flush(self, addresses: list[str]) -> None:
        """Queue the deletion of every entry from or to these addresses (no prefix)."""
        if self._binary is None:
            return
        ips = [str(ipaddress.ip_address(a)) for a in addresses if a]
        if not ips:
            return
        with self._cv:
            self._queue.extend(ips)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cnm-conntrack", daemon=True)
                self._thread.start()
            self._cv.notify_all()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                ip = self._queue.popleft()
                self._busy = True
            try:
                self.flush_now(ip)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def flush_now(self, ip: str) -> None:
        family = "ipv6" if ipaddress.ip_address(ip).version == 6 else "ipv4"
        for direction in ("--orig-src", "--orig-dst", "--reply-src", "--reply-dst"):
            argv = [str(self._binary), "-D", "-f", family, direction, ip]
            try:
                # Exit status 1 means "no entry matched": not an error here.
                subprocess.run(argv, capture_output=True, timeout=_TIMEOUT, check=False)
            except (OSError, subprocess.TimeoutExpired) as e:
                log.warning("conntrack flush of %s failed: %s", ip, e)

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: not self._queue and not self._busy, timeout)
