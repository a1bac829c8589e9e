"""Self-repair while running: links deleted behind cnm's back come back.

The firewall heals itself after `nft flush ruleset`; this does the same for
links of bridge networks:

- a network's bridge deleted (`ip link del br-...`): made again with its
  gateways, and the host ends of its joined endpoints plugged back in (a
  bridge's deletion leaves its ports behind, detached);
- a joined endpoint's veth deleted (either end: the pair goes together): made
  again as Join made it, addresses, MAC, routes and default route included,
  so the sandbox is reachable again and the API's JOINED is true again
  (not for sandboxes whose runtime moves interfaces itself, Docker's: only
  that runtime can put the container end back).

The kernel's link-deletion events (osl.LinkDeletions) wake the repair at once
when a name cnm owns goes; a pass every `interval` seconds catches anything the
events missed. Each repair takes the same locks as the calls that change that
object (network; sandbox then endpoint) and checks again under them that the
object is still meant to exist and the link is still missing, so a Leave or a
DeleteNetwork in progress is never undone.
"""

from __future__ import annotations

import logging
import threading
import time

from driver_service import osl
from driver_service.drivers.bridge import BridgeDriver
from driver_service.manager import Manager
from driver_service.models import JOINED, READY, EndpointRecord, NetworkRecord
from services.errors import CnmError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0


class LinkRepair:
    def __init__(self, manager: Manager, interval: float = DEFAULT_INTERVAL) -> None:
        self.m = manager
        self.state = manager.state
        self.interval = interval
        self.repaired = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._events = osl.LinkDeletions(self._deleted)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._events.start()
        self._thread = threading.Thread(target=self._run, name="cnm-link-repair", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._events.stop()
        if self._thread is not None:
            self._thread.join(5.0)

    # --- what to watch -------------------------------------------------------------------

    def _bridge_networks(self) -> list[tuple[NetworkRecord, BridgeDriver]]:
        out = []
        for net in self.state.networks():
            if net.state != READY:
                continue
            try:
                driver = self.m.driver_of(net)
            except CnmError:
                continue
            if isinstance(driver, BridgeDriver):
                out.append((net, driver))
        return out

    def _joined(self, network_ids: set[str]) -> list[EndpointRecord]:
        return [
            ep
            for ep in self.state.endpoints()
            if ep.network_id in network_ids
            and ep.attachment is not None
            and ep.attachment.state == JOINED
            and ep.attachment.host_ifname
        ]

    def _deleted(self, name: str | None) -> None:
        if name is None:
            self._wake.set()  # events were lost: look at everything
            return
        nets = self._bridge_networks()
        owned = {driver.bridge_name(net) for net, driver in nets}
        owned |= {ep.attachment.host_ifname for ep in self._joined({n.id for n, _ in nets})}  # type: ignore[union-attr]
        if name in owned:
            # Often cnm's own doing (a sandbox's namespace deleted with it): the
            # repair checks under the object's locks and logs only what it repairs.
            log.debug("link %s deleted: checking", name)
            self._wake.set()

    # --- repairing -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the loop outlives any failure
                log.exception("link repair pass failed; next pass in %.0f s", self.interval)

    def check(self) -> int:
        """One pass: repairs every missing bridge, then every missing veth; returns
        how many links were made again."""
        nets = self._bridge_networks()
        if not nets:
            return 0
        # Names only: this pass runs every `interval` seconds and on every deletion
        # of a link cnm owns; decoding every veth fully grew RSS with the veths.
        links = osl.link_names()
        done = 0
        for net, driver in nets:
            if driver.bridge_name(net) not in links:
                done += self._repair_bridge(net, driver)
        by_id = {net.id: (net, driver) for net, driver in nets}
        for ep in self._joined(set(by_id)):
            if ep.attachment is not None and ep.attachment.host_ifname not in links:
                done += self._repair_veth(ep, by_id[ep.network_id][1])
        self.repaired += done
        return done

    def _repair_bridge(self, net: NetworkRecord, driver: BridgeDriver) -> int:
        start = time.perf_counter()
        with self.m.locks.network(net.id):
            current = self.state.network(net.id)
            name = driver.bridge_name(net)
            if current is None or current.state != READY or osl.link_exists(name):
                return 0
            try:
                driver.repair_bridge(current, self._joined({net.id}))
            except CnmError as e:
                log.error("cannot recreate bridge %s of network %s: %s", name, net.id[:12], e)
                return 0
        log.warning(
            "bridge %s of network %s was deleted behind cnm's back: recreated (%.1f ms)",
            name,
            net.id[:12],
            (time.perf_counter() - start) * 1e3,
        )
        return 1

    def _repair_veth(self, ep: EndpointRecord, driver: BridgeDriver) -> int:
        start = time.perf_counter()
        att = ep.attachment
        assert att is not None
        with self.m.locks.sandbox(att.sandbox_id), self.m.locks.endpoint(ep.id):
            current = self.state.endpoint(ep.id)
            now = current.attachment if current is not None else None
            net = self.state.network(ep.network_id)
            sb = self.state.sandbox(att.sandbox_id)
            if (
                current is None
                or now is None
                or now.state != JOINED
                or now.host_ifname != att.host_ifname
                or net is None
                or net.state != READY
                or sb is None
                or sb.state != READY
                # The runtime moved the container end itself (Docker): only it can again.
                or sb.spec.runtime_moves_interfaces
                or not self.m.sandboxes.alive(sb)
                or osl.link_exists(att.host_ifname)
            ):
                return 0
            try:
                driver.repair_veth(net, current, sb, now)
            except CnmError as e:
                log.error("cannot recreate the veth of endpoint %s: %s", ep.id[:12], e)
                return 0
        log.warning(
            "veth %s of endpoint %s (sandbox %s) was deleted behind cnm's back: "
            "recreated (%.1f ms)",
            att.host_ifname,
            ep.id[:12],
            att.sandbox_id[:12],
            (time.perf_counter() - start) * 1e3,
        )
        return 1
