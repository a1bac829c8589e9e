"""Deleting links off the caller's path.

Deleting a veth costs ~20 ms of kernel time (unregistering a device waits for
RCU grace periods; moving it to another namespace costs as much, measured, so
a "graveyard" namespace would not help). `delete_link_async` does the part a
caller can observe synchronously, and leaves the expensive part to a
background thread:

1. now: each end that still exists is renamed `cnmgc<ifindex>`, set down, put
   in the link group `TOMBSTONE_GROUP` and (the host end) detached from its
   bridge, in one RTM_SETLINK per end (`osl.batch`: ~1 ms for both ends here,
   against ~3.3 ms through pyroute2 handles). From this moment the sandbox has no
   `eth0` any more (the name is free for the next Join, the addresses carry
   no routes), the host name is free for a new endpoint, and the bridge port
   is released;
2. later: one worker thread, with its own netlink socket per namespace,
   deletes every tombstone of a namespace in one RTM_DELLINK by group (the
   kernel unregisters them as a batch, so a burst of Leaves shares the cost).

What remains visible in between is a down, detached `cnmgc*` link;
`osl.query` hides those. If the process dies before step 2, the tombstones
stay: `reap_tombstones(netns)` (run it when the driver starts) removes them.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_SETLINK

from services import metrics
from services.errors import NotFound

from . import batch, validate
from .batch import LinkRef
from .nsenter import NetnsRef, netns_path
from .query import TOMBSTONE_PREFIX
from .rtnl import GONE, kernel_errors, netlink_socket

log = logging.getLogger(__name__)

# "cnm" in ASCII; any u32 no one else uses. Only tombstones are ever put in it.
TOMBSTONE_GROUP = 0x636E6D


@contextmanager
def _socket(netns: NetnsRef) -> Iterator[socket.socket | None]:
    """A netlink socket in `netns`, or None when the namespace is gone."""
    try:
        sock = netlink_socket(netns)
    except NotFound as e:
        if e.reason != "NETNS_NOT_FOUND":
            raise
        yield None
        return
    try:
        yield sock
    finally:
        sock.close()


def _request(
    sock: socket.socket, kind: int, index: int = 0, *, down: bool = False, **attrs: object
) -> None:
    """One link request (`attrs` as `batch.link_msg` takes them); raises the
    kernel's NetlinkError (its errno in `.code`)."""
    msg = batch.link_msg(index, down=down, attrs=attrs)
    reply = batch.Batch().add(msg, kind, 0, "").send(sock)[0]
    if reply.error is not None:
        raise reply.error


def _tombstone(sock: socket.socket, ref: LinkRef, detach: bool) -> bool:
    """False when the link went away meanwhile."""
    tomb = f"{TOMBSTONE_PREFIX}{ref.index}"
    state: dict[str, object] = {"group": TOMBSTONE_GROUP}
    if detach:
        state["master"] = 0
    try:
        try:
            _request(sock, RTM_SETLINK, ref.index, down=True, ifname=tomb, **state)
        except NetlinkError as e:
            if e.code != errno.EBUSY:
                raise
            # A kernel that renames only links that are down: two requests.
            _request(sock, RTM_SETLINK, ref.index, down=True, **state)
            _request(sock, RTM_SETLINK, ref.index, ifname=tomb)
    except NetlinkError as e:
        if e.code in GONE:
            return False
        raise
    return True


def _tombstone_named(
    name: str, netns: NetnsRef, detach: bool, only_index: int | None = None
) -> bool:
    """Tombstone `name` in `netns` (only if its index is `only_index`, when
    given); False when it (or the namespace) is gone."""
    with (
        kernel_errors(f"detach link {name!r} for deletion"),
        _socket(netns) as sock,
    ):
        if sock is None:
            return False
        ref = batch.find_link(sock, name)
        if ref is None or (only_index is not None and ref.index != only_index):
            return False
        return _tombstone(sock, ref, detach)


def delete_group(netns: NetnsRef, step: str = "netlink") -> bool:
    """Delete every tombstone in `netns` now. False when there was none (or no namespace)."""
    with (
        metrics.step(step),
        kernel_errors(f"delete tombstone links in {netns or 'the host namespace'}"),
        _socket(netns) as sock,
    ):
        if sock is None:
            return False
        try:
            _request(sock, RTM_DELLINK, group=TOMBSTONE_GROUP)
        except NetlinkError as e:
            if e.code in GONE:
                return False
            raise
        return True


def reap_tombstones(netns: NetnsRef = None) -> bool:
    """Synchronously delete tombstones a previous process left in `netns`. Idempotent."""
    return delete_group(netns)


class _Reaper:
    """One background thread deleting tombstones, batched per namespace."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._pending: dict[str | None, list[Future[bool]]] = {}
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, netns: NetnsRef) -> Future[bool]:
        fut: Future[bool] = Future()
        key = netns_path(netns)
        with self._cv:
            self._pending.setdefault(key, []).append(fut)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="cnm-osl-reaper", daemon=True
                )
                self._thread.start()
            self._cv.notify_all()
        return fut

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    self._cv.wait()
                batch, self._pending = self._pending, {}
                self._busy = True
            try:
                for key, futures in batch.items():
                    try:
                        # Off every caller's path: ~20 ms of kernel time per veth
                        # (RCU grace periods), timed apart from the callers' netlink.
                        delete_group(key, "netlink_background")
                    except Exception as e:  # noqa: BLE001 - reported through the futures
                        log.warning("background delete in %s failed: %s", key or "host", e)
                        for fut in futures:
                            fut.set_exception(e)
                    else:
                        for fut in futures:
                            fut.set_result(True)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: not self._pending and not self._busy, timeout)


_reaper = _Reaper()


def delete_link_async(
    name: str, *, netns: NetnsRef = None, peer_name: str | None = None, peer_netns: NetnsRef = None
) -> Future[bool]:
    """Make link `name` disappear now, and delete it in the background. Idempotent.

    For a veth, pass the sandbox end too (`peer_name` in `peer_netns`): it is
    tombstoned first, so the sandbox loses its interface at once, and it is
    handled even when the host end is already gone (a Leave retried after a
    crash); a link of that name that is not this veth's other end is left
    alone. Returns a future that resolves to True once the kernel deleted
    the link (already done, False, when nothing was found). Raises only for
    invalid input or an unexpected kernel error in the synchronous part.
    """
    name = validate.ifname(name)
    if peer_name is not None:
        peer_name = validate.ifname(peer_name)
    with (
        metrics.step("netlink"),
        kernel_errors(f"detach link {name!r} for deletion"),
        _socket(netns) as sock,
    ):
        host = batch.find_link(sock, name) if sock is not None else None
        peer_found = peer_name is not None and _tombstone_named(
            peer_name,
            peer_netns,
            detach=False,
            only_index=host.peer_index if host is not None else None,
        )
        host_found = host is not None and sock is not None and _tombstone(sock, host, detach=True)
    if host_found:
        return _reaper.submit(netns)
    if peer_found:
        return _reaper.submit(peer_netns)
    done: Future[bool] = Future()
    done.set_result(False)
    return done


def wait_for_background_deletes(timeout: float | None = 10.0) -> bool:
    """Block until every queued background delete has run; False on timeout."""
    return _reaper.wait_idle(timeout)
