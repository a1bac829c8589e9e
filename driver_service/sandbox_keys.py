"""Which namespaces a runtime may hand over as a sandbox (an external key).

Join plumbs interfaces, addresses and a default route into a sandbox's
namespace, and Leave takes them away again: given the host's own namespace
(`/proc/self/ns/net`, `/proc/1/ns/net`, a bind mount of either) a Join would
replace the host's default route and a Leave would leave it with none. Host
networking is the `host` driver's job. So an external key must be

- in a place where containers' namespaces live: /run/netns/..., /var/run/netns/...,
  /proc/PID/ns/net (or /proc/PID/task/TID/ns/net), or under a directory named in
  the driver's `sandbox_key_dirs` (e.g. /var/run/docker/netns);
- not the namespace this driver serves, nor that of PID 1 (compared by device
  and inode, so no path, link or bind mount gets around it).

The same check runs again at each Join: a /proc/PID path may by then name
another process.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Iterable

from driver_service import osl
from services.errors import InvalidArgument, NotFound, PermissionDenied

DEFAULT_DIRS = ("/run/netns", "/var/run/netns")
_PROC_NETNS = re.compile(r"/proc/[1-9][0-9]*(/task/[1-9][0-9]*)?/ns/net")


class SandboxKeys:
    def __init__(self, extra_dirs: Iterable[str] = ()) -> None:
        self.dirs = tuple(dict.fromkeys([*DEFAULT_DIRS, *map(posixpath.normpath, extra_dirs)]))

    def allowed_place(self, key: str) -> bool:
        if key != posixpath.normpath(key):  # "..", "//", "/./": one spelling only
            return False
        return bool(_PROC_NETNS.fullmatch(key)) or any(key.startswith(d + "/") for d in self.dirs)

    def check(self, key: str) -> str:
        """`key` unchanged, or InvalidArgument (SANDBOX_KEY_NOT_ALLOWED, NOT_A_NETNS),
        NotFound (NETNS_NOT_FOUND) or PermissionDenied (HOST_NETNS)."""
        if not key.startswith("/"):
            osl.check_netns_path(key)  # InvalidArgument: "must be an absolute path"
        if not self.allowed_place(key):
            raise InvalidArgument(
                f"sandbox key {key!r} is not allowed: give a network namespace under "
                f"{', '.join(self.dirs)} or /proc/PID/ns/net",
                reason="SANDBOX_KEY_NOT_ALLOWED",
                metadata={"key": key},
            )
        osl.check_netns_path(key)
        if osl.netns_identity(key) in self._hosts():
            raise PermissionDenied(
                f"sandbox key {key!r} is the host's own network namespace: "
                "use the host driver for host networking",
                reason="HOST_NETNS",
                metadata={"key": key},
            )
        return key

    @staticmethod
    def _hosts() -> set[tuple[int, int]]:
        """The namespace this driver serves, and PID 1's (the machine's, when the
        driver runs in a namespace of its own)."""
        found = {osl.netns_identity(None)}
        # Another PID namespace may have no PID 1 we can open.
        with contextlib.suppress(InvalidArgument, NotFound):
            found.add(osl.netns_identity("/proc/1/ns/net"))
        return found
