"""Netlink handles bound to a namespace, and errno → domain error translation.

`rtnl(netns)` yields a pyroute2 `IPRoute` whose socket lives in `netns`. The
socket is created by osl's namespace visitor thread (see `nsenter`), so opening a handle
costs ~0.6 ms (most of it pyroute2's own event-loop setup) instead of the
~5.5 ms fork of `IPRoute(netns=...)`. Handles are opened per operation and
closed at once; there is deliberately no long-lived per-namespace cache,
because an open socket pins its namespace: a cached socket would keep a
sandbox's namespace (and the veth peer inside it, still plugged into the
bridge) alive after the runtime deleted it.

Handles are not thread-safe; each call opens its own. The sync pyroute2 API
cannot run inside a running asyncio loop: call osl from threads (gRPC's
thread pool, or `asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2 import IPRoute
from pyroute2.netlink import NETLINK_ROUTE
from pyroute2.netlink.exceptions import NetlinkError

from services import metrics
from services.errors import (
    AlreadyExists,
    CnmError,
    Exhausted,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)

from .nsenter import NetnsRef, make_in_netns, open_netns

SOL_NETLINK = 270
NETLINK_EXT_ACK = 11
_BUF = 1 << 20

# errno values that mean "the thing is already gone" for a delete.
GONE = frozenset({errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL})


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUF)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUF)
        # Extended ACKs: the kernel's own explanation ends up in NetlinkError.
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    except OSError:
        sock.close()
        raise
    return sock


def netlink_socket(netns: NetnsRef) -> socket.socket:
    """A NETLINK_ROUTE socket living in `netns` (NotFound if it does not exist)."""
    with open_netns(netns) as fd:
        if fd is None:
            return _new_socket()
        return make_in_netns(fd, _new_socket)


@contextmanager
def rtnl(netns: NetnsRef = None, step: str = "netlink") -> Iterator[IPRoute]:
    """A short-lived pyroute2 IPRoute operating in `netns`; its time is the
    metrics step `step` (the background deleter's is "netlink_background",
    so that it is not mistaken for time a caller waits)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "osl uses pyroute2's sync API: call it from a thread, "
            "not from inside a running asyncio event loop"
        )
    with metrics.step(step):
        sock = netlink_socket(netns)
        try:
            ipr = IPRoute(use_socket=sock, groups=0)
        except BaseException:
            sock.close()
            raise
        try:
            yield ipr
        finally:
            ipr.close()
            sock.close()


@contextmanager
def raw_rtnl(netns: NetnsRef = None, step: str = "netlink") -> Iterator[socket.socket]:
    """A NETLINK_ROUTE socket in `netns` for `osl.batch` (no pyroute2 handle,
    no event loop), closed on exit; its time is the metrics step `step`."""
    with metrics.step(step):
        sock = netlink_socket(netns)
        try:
            yield sock
        finally:
            sock.close()


def errno_of(exc: BaseException) -> int | None:
    if isinstance(exc, NetlinkError):
        return exc.code
    if isinstance(exc, OSError):
        return exc.errno
    return None


def _kernel_text(exc: BaseException) -> str:
    if isinstance(exc, NetlinkError) and len(exc.args) > 1 and exc.args[1]:
        return str(exc.args[1])
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def to_domain_error(exc: BaseException, action: str, **values: object) -> CnmError:
    """Classify a kernel error raised while doing `action` (e.g. "create bridge 'br0'").

    `values` are the inputs the kernel may have rejected; they are named in
    the message of an InvalidArgument and in every error's metadata.
    """
    if isinstance(exc, CnmError):
        return exc
    code = errno_of(exc)
    text = _kernel_text(exc)
    meta = {k: str(v) for k, v in values.items() if v is not None}
    given = ", ".join(f"{k}={v}" for k, v in meta.items())
    name = errno.errorcode.get(code, str(code)) if code is not None else "?"
    detail = f"{action}: {text} ({name})"
    if code == errno.EEXIST:
        return AlreadyExists(f"{action}: already exists", metadata=meta)
    if code in (errno.EINVAL, errno.ERANGE, errno.ENETUNREACH, errno.EAFNOSUPPORT):
        suffix = f"; rejected input: {given}" if given else ""
        return InvalidArgument(f"{detail}{suffix}", metadata=meta)
    if code in (errno.EXFULL, errno.E2BIG, errno.ENOSPC):
        return Exhausted(detail, metadata=meta)
    if code in (errno.ENODEV, errno.ENOENT, errno.ESRCH):
        return NotFound(detail, metadata=meta)
    if code in (errno.EOPNOTSUPP, errno.EBUSY, errno.ELOOP, errno.EACCES):
        return FailedPrecondition(detail, metadata=meta)
    return Internal(detail, metadata=meta)


@contextmanager
def kernel_errors(action: str, **values: object) -> Iterator[None]:
    """Re-raise kernel errors (NetlinkError/OSError) as domain errors, with context."""
    try:
        yield
    except CnmError:
        raise
    except (NetlinkError, OSError) as e:
        raise to_domain_error(e, action, **values) from e
