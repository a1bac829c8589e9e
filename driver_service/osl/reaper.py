"""Deleting links off the caller's path.

Deleting a veth costs ~20 ms of kernel time (unregistering a device waits for
RCU grace periods). `delete_link_async` does the part a caller can observe
synchronously (~4 ms for both ends of a veth, measured: two sockets and six
small netlink requests), and leaves the expensive part to a background thread:

1. now: each end that still exists is set down, detached from its bridge,
   put in the link group `TOMBSTONE_GROUP` and renamed `cnmgc<ifindex>`. From
   this moment the sandbox has no `eth0` any more (the name is free for the
   next Join, the addresses carry no routes), the host name is free for a new
   endpoint, and the bridge port is released;
2. later: one worker thread, with its own netlink socket per namespace,
   deletes every tombstone of a namespace in one RTM_DELLINK by group (the
   kernel unregisters them as a batch, so a burst of Leaves shares the cost).

What remains visible in between is a down, detached `cnmgc*` link;
`osl.query` hides those. If the process dies before step 2, the tombstones
stay: `reap_tombstones(netns)` (run it when the driver starts) removes them.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from services.errors import NotFound

from . import validate
from .addressing import find_index
from .nsenter import NetnsRef, netns_path
from .query import TOMBSTONE_PREFIX
from .rtnl import GONE, kernel_errors, rtnl, to_domain_error

log = logging.getLogger(__name__)

# "cnm" in ASCII; any u32 no one else uses. Only tombstones are ever put in it.
TOMBSTONE_GROUP = 0x636E6D


def _tombstone(ipr: IPRoute, index: int, detach: bool) -> None:
    kwargs: dict[str, object] = {"index": index, "state": "down", "group": TOMBSTONE_GROUP}
    if detach:
        kwargs["master"] = 0
    ipr.link("set", **kwargs)
    # A link must be down to be renamed, hence the second message.
    ipr.link("set", index=index, ifname=f"{TOMBSTONE_PREFIX}{index}")


def _tombstone_named(name: str, netns: NetnsRef, detach: bool) -> bool:
    """Tombstone `name` in `netns`; False when it (or the namespace) is gone."""
    try:
        with rtnl(netns) as ipr:
            index = find_index(ipr, name)
            if index is None:
                return False
            try:
                _tombstone(ipr, index, detach)
            except NetlinkError as e:
                if e.code in GONE:
                    return False
                raise to_domain_error(e, f"detach link {name!r} for deletion") from e
            return True
    except NotFound as e:
        if e.reason == "NETNS_NOT_FOUND":
            return False
        raise


def delete_group(netns: NetnsRef, step: str = "netlink") -> bool:
    """Delete every tombstone in `netns` now. False when there was none (or no namespace)."""
    try:
        with (
            kernel_errors(f"delete tombstone links in {netns or 'the host namespace'}"),
            rtnl(netns, step) as ipr,
        ):
            try:
                ipr.link("del", index=0, group=TOMBSTONE_GROUP)
            except NetlinkError as e:
                if e.code in GONE:
                    return False
                raise
            return True
    except NotFound as e:
        if e.reason == "NETNS_NOT_FOUND":
            return False
        raise


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
    crash). Returns a future that resolves to True once the kernel deleted
    the link (already done, False, when nothing was found). Raises only for
    invalid input or an unexpected kernel error in the synchronous part.
    """
    name = validate.ifname(name)
    if peer_name is not None:
        peer_name = validate.ifname(peer_name)
    peer_found = peer_name is not None and _tombstone_named(peer_name, peer_netns, detach=False)
    host_found = _tombstone_named(name, netns, detach=True)
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
