"""Start-up reconciliation of the kernel with the records, and `cnm-driver --cleanup`.

On start (before the service accepts calls) every record's intent is settled:

- sandboxes "creating" are undone, "deleting" are finished;
- endpoints "joining"/"leaving" are undone (their veth removed; the caller
  simply joins again), "joined" ones whose namespace vanished are left;
- networks "creating" are undone, "deleting" are finished;
- every ready network is restored: a missing bridge is recreated, the
  firewall is made to match the records (missing rules come back, rules of
  networks that no longer exist go);
- orphans carrying cnm's marks are removed: host links whose alias is
  `cnm:net:<id>` / `cnm:ep:<id>` with no record, namespaces named
  `<netns_prefix>*` that this driver made (driver_service/netns_owner.py) and
  no host's records know, sandbox directories with no record, and tombstones
  a crash left before their background delete.

Every step is idempotent and keeps going after an error (logged, counted):
one broken object never keeps the rest of the host unreconciled.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import cast

from driver_service import osl
from driver_service.constants import ALIAS_ENDPOINT, ALIAS_NETWORK, ALIAS_PREFIX
from driver_service.drivers import macvlan, overlay
from driver_service.drivers.bridge import fw
from driver_service.hostreg import report_lost_sandboxes
from driver_service.manager import Manager
from driver_service.models import CREATING, DELETING, JOINED, READY
from driver_service.netns_owner import OwnedNamespaces
from driver_service.sandbox import SHORT_ID
from services.errors import CnmError
from services.store import Store

log = logging.getLogger(__name__)

_LINK_KINDS = {ALIAS_NETWORK: "bridge", ALIAS_ENDPOINT: "veth"}


@dataclasses.dataclass
class Report:
    undone: int = 0
    finished: int = 0
    orphans: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)


def _parse_alias(alias: str | None) -> tuple[str, str] | None:
    """("net"|"ep", id) for an alias cnm set, else None."""
    if not alias or not alias.startswith(ALIAS_PREFIX):
        return None
    kind, _, ident = alias[len(ALIAS_PREFIX) :].partition(":")
    if kind not in _LINK_KINDS or not ident:
        return None
    return kind, ident


def cnm_namespaces(prefix: str) -> list[str]:
    """Namespaces under /run/netns named exactly `<prefix><12 hex>`: the ones cnm makes.

    The exact shape matters: other tools (and people debugging) make namespaces
    whose names merely start with "cnm-"; those are never touched.
    """
    shape = re.compile(re.escape(prefix) + f"[0-9a-f]{{{SHORT_ID}}}")
    return [n for n in osl.list_namespaces(prefix) if shape.fullmatch(n)]


def known_sandbox_netns(store: Store, prefix: str, *, exclude_host: str = "") -> set[str]:
    """Namespace names of every sandbox any host has on record in this store.

    Several driver services may share one machine's /run/netns (test hosts
    are namespaces of one machine): a namespace is only an orphan when no
    host knows it.
    """
    client = store.client
    hosts = cast("set[str]", client.smembers(store.key("hosts")))  # decoded replies
    hosts |= {k.split(":")[-2] for k in client.scan_iter(store.key("driver", "*", "sandboxes"))}
    names = set()
    for host in hosts - {exclude_host}:
        for sid in cast("set[str]", client.smembers(store.key("driver", host, "sandboxes"))):
            names.add(f"{prefix}{sid[:SHORT_ID]}")
    return names


class Reconciler:
    def __init__(self, manager: Manager, store: Store, netns_prefix: str) -> None:
        self.m = manager
        self.state = manager.state
        self.store = store
        self.netns_prefix = netns_prefix
        self.report = Report()

    def _try(self, what: str, fn: Callable[[], object]) -> bool:
        try:
            fn()
            return True
        except CnmError as e:
            log.error("reconcile: %s: %s", what, e)
            self.report.errors.append(f"{what}: {e}")
            return False

    def run(self) -> Report:
        self.state.load()
        self._try("reap host tombstones", lambda: osl.reap_tombstones(None))
        self._settle_sandboxes()
        lost = [
            s.id
            for s in self.state.sandboxes()
            if s.state == READY and not self.m.sandboxes.alive(s)
        ]
        self._try(
            "report lost sandboxes",
            lambda: report_lost_sandboxes(self.store, self.state.host_id, lost),
        )
        self._settle_endpoints()
        self._settle_networks()
        self._restore()
        self._remove_orphans()
        ready = [s.id for s in self.state.sandboxes() if s.state == READY]
        self.m.sandboxes.refresh(ready, now=ready)
        r = self.report
        log.info(
            "reconciled: %d undone, %d finished, %d orphans removed, %d errors",
            r.undone,
            r.finished,
            r.orphans,
            len(r.errors),
        )
        return r

    def _settle_sandboxes(self) -> None:
        for sb in self.state.sandboxes():
            if sb.state in (CREATING, DELETING):
                with self.m.locks.sandbox(sb.id):
                    if self._try(
                        f"settle sandbox {sb.id[:12]}", partial(self.m.remove_sandbox, sb)
                    ):
                        if sb.state == CREATING:
                            self.report.undone += 1
                        else:
                            self.report.finished += 1
            elif not (
                sb.spec.runtime_moves_interfaces or sb.spec.host_network
            ) and self.m.sandboxes.alive(sb):
                self._try(f"reap tombstones in {sb.key}", partial(osl.reap_tombstones, sb.key))

    def _settle_endpoints(self) -> None:
        for ep in self.state.endpoints():
            att = ep.attachment
            if att is None:
                continue
            net = self.state.network(ep.network_id)
            sb = self.state.sandbox(att.sandbox_id)
            if att.state == JOINED and sb is not None and self.m.sandboxes.alive(sb):
                continue
            if att.state == JOINED:
                log.warning(
                    "endpoint %s: its sandbox %s is gone; leaving", ep.id[:12], att.sandbox_id[:12]
                )
            if net is None:
                self._try(
                    f"forget join of {ep.id[:12]}",
                    partial(self.state.put_endpoint, dataclasses.replace(ep, attachment=None)),
                )
                continue
            if self._try(
                f"undo join of endpoint {ep.id[:12]}",
                partial(self.m.detach, net, ep, att, sb),
            ):
                self.report.undone += 1
                if att.default_route and sb is not None:
                    self._try(
                        "hand over default route", partial(self.m.hand_over_default_route, sb)
                    )

    def _settle_networks(self) -> None:
        for net in self.state.networks():
            if net.state not in (CREATING, DELETING):
                continue
            if self._try(f"settle network {net.id[:12]}", partial(self.m.remove_network, net)):
                if net.state == CREATING:
                    self.report.undone += 1
                else:
                    self.report.finished += 1

    def _restore(self) -> None:
        ready = [n for n in self.state.networks() if n.state == READY]
        for driver in self.m.registry.all():
            nets = [n for n in ready if n.spec.driver == driver.name]
            ids = {n.id for n in nets}
            eps = [e for e in self.state.endpoints() if e.network_id in ids]
            self._try(f"restore {driver.name} networks", partial(driver.restore, nets, eps))

    def _remove_orphans(self) -> None:
        nets = {n.id: n for n in self.state.networks()}
        host_links = {
            e.attachment.host_ifname
            for e in self.state.endpoints()
            if e.attachment is not None and e.attachment.host_ifname
        }
        try:
            links = osl.list_links()
        except CnmError as e:
            self.report.errors.append(f"list links: {e}")
            links = []
        for link in links:
            mark = _parse_alias(link.alias)
            if mark is None or link.kind != _LINK_KINDS[mark[0]]:
                continue
            kind, ident = mark
            if (
                kind == ALIAS_NETWORK
                and ident in nets
                and nets[ident].data.get("bridge") == link.name
            ):
                continue
            if kind == ALIAS_ENDPOINT and link.name in host_links:
                continue
            log.warning("removing orphan link %s (%s)", link.name, link.alias)
            if self._try(f"remove orphan link {link.name}", partial(osl.delete_link, link.name)):
                self.report.orphans += 1
        self._remove_orphan_namespaces()
        self._remove_orphan_dirs()

    def _remove_orphan_namespaces(self) -> None:
        owned = self.m.sandboxes.owned
        # Sandboxes made before namespaces were marked are this driver's too.
        for sb in self.state.sandboxes():
            if sb.netns_name:
                owned.mark(sb.netns_name)
        try:
            known = known_sandbox_netns(self.store, self.netns_prefix)
        except CnmError as e:
            self.report.errors.append(f"read sandbox records: {e}")
            return
        present = set(cnm_namespaces(self.netns_prefix))
        for name in sorted(present - known):
            if not owned.owns(name):
                log.info("network namespace %s is not this driver's (no mark): left alone", name)
                continue
            log.warning("removing orphan network namespace %s", name)
            if self._try(f"remove orphan namespace {name}", partial(osl.delete_namespace, name)):
                owned.unmark(name)
                self.report.orphans += 1
        for name in set(owned.marked()) - present - known:
            owned.unmark(name)  # the namespace went while this driver was down

    def _remove_orphan_dirs(self) -> None:
        root = self.m.sandboxes.dir
        if not root.is_dir():
            return
        known = {s.id for s in self.state.sandboxes()}
        for entry in root.iterdir():
            if entry.is_dir() and entry.name not in known:
                shutil.rmtree(entry, ignore_errors=True)
                self.report.orphans += 1


def cleanup_host(
    *,
    store: Store | None,
    host_id: str,
    netns_prefix: str,
    state_dir: str,
    firewall: fw.BridgeFirewall,
) -> list[str]:
    """Remove everything cnm made on this host (`cnm-driver --cleanup`); return the errors.

    Kernel first (it works without Redis): every link marked by cnm in this
    namespace, cnm's nftables tables, the namespaces this driver made that no
    other host has on record, this host's overlay namespaces, the sandbox
    files; then this host's records (and its overlay peer entries).
    """
    errors: list[str] = []

    def attempt(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except CnmError as e:
            errors.append(f"{what}: {e}")

    def links() -> Iterable[osl.LinkInfo]:
        return [li for li in osl.list_links() if _parse_alias(li.alias) is not None]

    try:
        marked = list(links())
    except CnmError as e:
        errors.append(f"list links: {e}")
        marked = []
    # Veths first: a bridge's ports go with it anyway, but this keeps the log readable.
    for link in sorted(marked, key=lambda li: li.kind != "veth"):
        attempt(f"delete link {link.name}", partial(osl.delete_link, link.name))
    attempt("reap tombstones", lambda: osl.reap_tombstones(None))
    attempt("remove cnm's nftables tables", firewall.cleanup)

    others: set[str] = set()
    if store is not None:
        try:
            others = known_sandbox_netns(store, netns_prefix, exclude_host=host_id)
        except CnmError as e:
            errors.append(f"read other hosts' sandboxes: {e}")
    owned = OwnedNamespaces(state_dir)
    present = set(cnm_namespaces(netns_prefix))
    for name in sorted(present - others):
        if owned.owns(name):
            attempt(f"delete namespace {name}", partial(osl.delete_namespace, name))
    for name in set(owned.marked()) - set(cnm_namespaces(netns_prefix)):
        owned.unmark(name)
    # Overlay networks' namespaces of this host, and its entries in their peer tables.
    errors += overlay.cleanup(store, host_id=host_id, netns_prefix=netns_prefix)
    # Isolated parents of this host's macvlan networks.
    errors += macvlan.cleanup(host_id=host_id, netns_prefix=netns_prefix)
    shutil.rmtree(Path(state_dir) / "sandboxes", ignore_errors=True)

    if store is not None:

        def drop_records() -> None:
            keys = list(store.client.scan_iter(store.key("driver", host_id, "*")))
            # The host's port allocations: nothing is published any more.
            keys += list(store.client.scan_iter(store.key("ports", host_id, "*")))
            if keys:
                store.client.delete(*keys)

        attempt("delete this host's records", drop_records)
    return errors
