"""Network namespaces: create, delete, check, list.

Named namespaces are bind-mounted at `/run/netns/NAME`, exactly as
`ip netns add` does, so `ip netns exec NAME ...` works on them and they
survive the driver service. cnm's own sandboxes carry `NETNS_PREFIX`, which is
what `list_namespaces` (and reconciliation) looks for.
"""

from __future__ import annotations

import errno
import logging
import os
import threading

from services.errors import AlreadyExists, Internal, InvalidArgument, NotFound

from . import validate
from .nsenter import (
    NETNS_RUN_DIR,
    fd_is_netns,
    libc_call,
    netns_path,
    open_netns,
    run_on_thread,
)
from .rtnl import kernel_errors, rtnl

log = logging.getLogger(__name__)

NETNS_PREFIX = "cnm-"

MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

# Serialises create/delete in this process: a create that finds the mount point
# file already there must be able to tell "another create is half-way" from
# "a crashed create left an empty file".
_lock = threading.Lock()
_run_dir_ready = False


def _prepare_run_dir() -> None:
    """Make /run/netns a shared mount, as iproute2 does.

    Shared propagation lets namespaces mounted later appear in mount
    namespaces that were copied earlier (e.g. a container runtime's).
    """
    global _run_dir_ready
    if _run_dir_ready:
        return
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    target = NETNS_RUN_DIR.encode()
    try:
        libc_call("mount", b"none", target, b"none", MS_SHARED | MS_REC, None)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        # Not a mount point yet: bind it onto itself, then make it shared.
        libc_call("mount", target, target, b"none", MS_BIND | MS_REC, None)
        libc_call("mount", b"none", target, b"none", MS_SHARED | MS_REC, None)
    _run_dir_ready = True


def is_netns(path: str) -> bool:
    """True when `path` (a file, or a namespace name) is a live network namespace."""
    try:
        full = netns_path(path)
    except InvalidArgument:
        return False
    if full is None:
        return False
    try:
        fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fd_is_netns(fd)
    finally:
        os.close(fd)


def check_netns_path(path: str) -> str:
    """Validate an external key: an absolute path to a network namespace file.

    Accepts `/proc/PID/ns/net`, `/run/netns/NAME`, or any bind mount of one.
    Raises InvalidArgument for a relative path, a regular file, a directory or
    another kind of namespace; NotFound when the path does not exist (e.g. the
    process is gone). Returns the path unchanged.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgument(
            f"invalid external key {path!r}: must be an absolute path "
            "to a network namespace, e.g. /proc/PID/ns/net"
        )
    with open_netns(path):
        return path


def netns_identity(ref: str | None = None) -> tuple[int, int]:
    """(device, inode) of a network namespace: the same pair means the same
    namespace, whatever path reaches it. None: this process's own namespace."""
    if ref is None:
        st = os.stat("/proc/self/ns/net")
        return st.st_dev, st.st_ino
    with open_netns(ref) as fd:
        assert fd is not None
        st = os.fstat(fd)
        return st.st_dev, st.st_ino


def create_namespace(name: str) -> str:
    """Create a namespace bind-mounted at /run/netns/NAME, with `lo` up; return its path.

    Raises AlreadyExists when NAME is a live namespace. An empty mount point
    left by a crashed create is reused. On failure nothing is left behind.
    """
    path = netns_path(validate.netns_name(name))
    assert path is not None
    with _lock:
        with kernel_errors(f"prepare {NETNS_RUN_DIR}"):
            _prepare_run_dir()
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
        except FileExistsError as e:
            if is_netns(path):
                raise AlreadyExists(
                    f"network namespace {name!r} already exists", metadata={"netns": name}
                ) from e
            log.info("reusing stale mount point %s", path)
        try:
            run_on_thread(lambda: _mount_new_netns(path), unshare=True)
        except BaseException as e:
            _unmount_and_unlink(path)
            if isinstance(e, OSError):
                raise Internal(f"create network namespace {name!r}: {e.strerror}") from e
            raise
    return path


def _mount_new_netns(path: str) -> None:
    """Runs on a disposable thread that has just unshared into a new netns."""
    libc_call("mount", b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None)
    with kernel_errors("set lo up in a new namespace"), rtnl(None) as ipr:
        ipr.link("set", index=1, state="up")


def _unmount_and_unlink(path: str) -> bool:
    """Detach the bind mount and remove the file; False when neither existed."""
    found = False
    try:
        libc_call("umount2", path.encode(), MNT_DETACH)
        found = True
    except OSError as e:
        # EINVAL: not a mount point (stale file); ENOENT: no file at all.
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        os.unlink(path)
        found = True
    except FileNotFoundError:
        pass
    return found


def delete_namespace(name: str) -> bool:
    """Remove the namespace mounted at /run/netns/NAME. Idempotent.

    Returns False when it was already gone. The kernel frees the namespace
    (and destroys its interfaces: a veth's host end goes with its peer) once
    no process or socket holds it any more. External keys are never deleted
    here: the runtime owns them.
    """
    path = netns_path(validate.netns_name(name))
    assert path is not None
    with _lock, kernel_errors(f"delete network namespace {name!r}"):
        return _unmount_and_unlink(path)


def namespace_exists(name: str) -> bool:
    """True when /run/netns/NAME is a live network namespace."""
    return is_netns(validate.netns_name(name))


def list_namespaces(prefix: str = NETNS_PREFIX) -> list[str]:
    """Names under /run/netns that start with `prefix`, sorted.

    Stale mount points (files that are not namespaces) are included so that a
    reconciler can delete them; check with `is_netns` when it matters.
    """
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def require_namespace(name: str) -> str:
    """Path of a live named namespace, or NotFound."""
    path = netns_path(validate.netns_name(name))
    assert path is not None
    if not is_netns(path):
        raise NotFound(
            f"network namespace {name!r} does not exist",
            reason="NETNS_NOT_FOUND",
            metadata={"netns": name},
        )
    return path
