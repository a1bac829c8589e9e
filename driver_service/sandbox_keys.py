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

The one narrow way to the host's namespace is host networking
(SandboxSpec.host_network): such a sandbox never takes a runtime's key; its
key is `host_key()`, a path this driver finds for its own namespace, and the
manager lets it join `host` networks only (nothing is ever plumbed into it).
"""

from __future__ import annotations

import contextlib
import os
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

    def host_key(self) -> str:
        """A path naming the namespace this driver serves, for host-networked
        sandboxes: /proc/1/ns/net when that is it (the usual case), else an
        entry of the namespace directories bind-mounting it (a driver started
        with `nsenter --net=/run/netns/NAME`), else this process's own
        /proc/PID/ns/net (valid while the driver runs)."""
        own = osl.netns_identity(None)
        with contextlib.suppress(InvalidArgument, NotFound):
            if osl.netns_identity("/proc/1/ns/net") == own:
                return "/proc/1/ns/net"
        for d in self.dirs:
            with contextlib.suppress(OSError):
                for entry in sorted(os.listdir(d)):
                    path = posixpath.join(d, entry)
                    with contextlib.suppress(InvalidArgument, NotFound, OSError):
                        if osl.netns_identity(path) == own:
                            return path
        return f"/proc/{os.getpid()}/ns/net"

    @staticmethod
    def _hosts() -> set[tuple[int, int]]:
        """The namespace this driver serves, and PID 1's (the machine's, when the
        driver runs in a namespace of its own)."""
        found = {osl.netns_identity(None)}
        # Another PID namespace may have no PID 1 we can open.
        with contextlib.suppress(InvalidArgument, NotFound):
            found.add(osl.netns_identity("/proc/1/ns/net"))
        return found
