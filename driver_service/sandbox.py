"""Sandboxes: a network namespace per container, and its hosts/resolv.conf files.

A sandbox is either a namespace cnm creates, bind-mounted at
/run/netns/<netns_prefix><short id> (so `ip netns exec` works and it outlives
this process), or a namespace the runtime brings (an external key such as
/proc/PID/ns/net, checked to be a network namespace and never deleted here),
or, for host networking, the host's own namespace (`SandboxKeys.host_key`:
never created, entered for plumbing or deleted; its files are copies of the
host's, written under the state directory like any sandbox's).

The files live under <state_dir>/sandboxes/<id>/ and are re-rendered from the
records whenever the sandbox's own networks change (`refresh_network`). Peers
are found by name through the embedded resolver (cnm-dns, 127.0.0.11 in
resolv.conf), so a hosts file holds only localhost, the sandbox itself and its
extra hosts, and a join or leave costs the other sandboxes nothing. Networks
with the `cnm.network.legacy_hosts` option keep the old behaviour: every peer
in every hosts file, the peers' files rewritten by a background writer.
Rendering reads the records at that moment under one lock, so the last writer
always writes the newest view.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path

from driver_service import osl
from driver_service.constants import DRIVER_HOST, DRIVER_NULL
from driver_service.models import (
    CREATING,
    DELETING,
    JOINED,
    READY,
    EndpointRecord,
    InterfaceView,
    RouteView,
    SandboxRecord,
    SandboxSpec,
    SandboxView,
)
from driver_service.netns_owner import OwnedNamespaces
from driver_service.sandbox_files import (
    EMBEDDED_RESOLVER,
    HOST_HOSTS,
    HOST_RESOLV_CONF,
    HostEntry,
    legacy_hosts,
    own_names,
    read_text,
    render_hosts,
    render_resolv_conf,
    write_atomic,
)
from driver_service.sandbox_keys import SandboxKeys
from driver_service.state import State
from services.errors import AlreadyExists, NotFound

log = logging.getLogger(__name__)

SHORT_ID = 12


# network id -> (sandbox id, hosts entry) of its joined endpoints, for one writer batch
PeerCache = dict[str, list[tuple[str, HostEntry]]]


def _bare(cidr: str) -> str:
    """The address of a normalised CIDR ("10.0.0.2/24" -> "10.0.0.2")."""
    return cidr.split("/", 1)[0]


class Sandboxes:
    def __init__(
        self,
        state: State,
        *,
        state_dir: str,
        netns_prefix: str,
        resolver: str = EMBEDDED_RESOLVER,
        key_dirs: Iterable[str] = (),
    ) -> None:
        self.state = state
        # Where a runtime's own namespace (external key) may come from.
        self.keys = SandboxKeys(key_dirs)
        # The namespaces this driver made (another cnm on this machine has its own).
        self.owned = OwnedNamespaces(state_dir)
        # The embedded resolver's address written into resolv.conf ("" = none: the
        # host's servers, filtered, as without cnm-dns).
        self.resolver = resolver
        self.dir = Path(state_dir) / "sandboxes"
        self.netns_prefix = netns_prefix
        # Serialises every file write; `_written` caches what each path holds.
        self._files_lock = threading.Lock()
        self._written: dict[str, str] = {}
        self._cv = threading.Condition()
        self._pending: set[str] = set()
        self._busy = False
        self._writer: threading.Thread | None = None
        # Overridable for tests of the rendering; the host's own files otherwise.
        self.host_resolv_conf = HOST_RESOLV_CONF
        self.host_hosts = HOST_HOSTS

    def netns_name(self, sandbox_id: str) -> str:
        return f"{self.netns_prefix}{sandbox_id[:SHORT_ID]}"

    def plan(self, spec: SandboxSpec) -> SandboxRecord:
        """The record of a new sandbox (state CREATING): names and paths, no kernel step."""
        adopted = spec.external_key or spec.runtime_moves_interfaces or spec.host_network
        name = "" if adopted else self.netns_name(spec.sandbox_id)
        if spec.host_network:
            key = self.keys.host_key()
        else:
            key = spec.external_key or osl.netns_path(name) or ""
        home = self.dir / spec.sandbox_id
        return SandboxRecord(
            spec=spec,
            state=CREATING,
            key=key,
            netns_name=name,
            hosts_path=str(home / "hosts"),
            resolv_conf_path=str(home / "resolv.conf"),
        )

    def build(self, rec: SandboxRecord) -> None:
        """Create the namespace (unless adopted) and write the files; undone on failure."""
        created = marked = False
        try:
            if rec.netns_name:
                # Marked first: a crash before the record is written leaves a mark
                # for the start-up sweep; an unmarked namespace is another instance's.
                marked = self.owned.mark(rec.netns_name)
                try:
                    osl.create_namespace(rec.netns_name)
                except AlreadyExists as e:
                    raise AlreadyExists(
                        f"sandbox {rec.id}: network namespace {rec.netns_name!r} is "
                        "already in use (another sandbox with the same short id?)",
                        reason="NETNS_EXISTS",
                        metadata={"netns": rec.netns_name},
                    ) from e
                created = True
            self.write_files(rec)
        except BaseException:
            if marked and not created:
                self.owned.unmark(rec.netns_name)
            self.destroy(rec, namespace=created)
            raise

    def destroy(self, rec: SandboxRecord, *, namespace: bool = True) -> None:
        """Remove the namespace cnm created (idempotent) and the sandbox's files."""
        try:
            if namespace and rec.netns_name:
                osl.delete_namespace(rec.netns_name)
                self.owned.unmark(rec.netns_name)
        finally:
            # Under the files lock: the background writer must not recreate the directory.
            with self._files_lock:
                shutil.rmtree(Path(rec.hosts_path).parent, ignore_errors=True)
                self._written.pop(rec.hosts_path, None)
                self._written.pop(rec.resolv_conf_path, None)

    def alive(self, rec: SandboxRecord) -> bool:
        # The runtime's own namespace may be invisible here (another mount
        # namespace): assumed alive, the runtime says when it goes (Leave).
        if rec.spec.runtime_moves_interfaces:
            return True
        return bool(rec.key) and osl.is_netns(rec.key)

    # --- files ----------------------------------------------------------------------------

    def refresh_network(self, network_id: str, sandbox_id: str) -> None:
        """A sandbox joined or left a network: its own files now; the other
        sandboxes' files only when the network asks for legacy hosts files."""
        affected = {sandbox_id}
        net = self.state.network(network_id)
        if net is not None and legacy_hosts(net.spec.options):
            for ep in self.state.endpoints_of_network(network_id):
                if ep.attachment is not None:
                    affected.add(ep.attachment.sandbox_id)
        self.refresh(affected, now=[sandbox_id])

    def refresh(self, sandbox_ids: Iterable[str], *, now: Iterable[str] = ()) -> None:
        """Rewrite the files of these sandboxes from the current records.

        Those in `now` are written before this returns (the sandbox a Join or
        Leave is about: its runtime reads the files next). The others (its
        peers) are handed to a background writer that coalesces bursts: when
        many sandboxes of a network join at once, each peer's file is rewritten
        once per burst instead of once per join, and no Join waits for O(peers)
        file writes. They are current a few milliseconds later (`flush` waits).
        """
        now = set(now)
        with self._files_lock:
            for sid in sorted(now):
                self._write_sid(sid)
        later = set(sandbox_ids) - now
        if later:
            with self._cv:
                self._pending |= later
                if self._writer is None or not self._writer.is_alive():
                    self._writer = threading.Thread(
                        target=self._write_pending, name="cnm-sandbox-files", daemon=True
                    )
                    self._writer.start()
                self._cv.notify_all()

    def _write_pending(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    self._cv.wait()
                batch, self._pending = self._pending, set()
                self._busy = True
            # One walk of each network's endpoints per batch, not one per peer
            # file (that was O(peers^2) per join). A change after the walk
            # re-queues every peer, so a stale entry lives one batch at most.
            peer_cache: PeerCache = {}
            try:
                for sid in sorted(batch):
                    # The lock per file, not per batch: a Join's own write
                    # (refresh(now=...)) waits for one peer's file at most,
                    # not for a whole burst of them.
                    try:
                        with self._files_lock:
                            self._write_sid(sid, peer_cache)
                    except Exception:  # noqa: BLE001 - one bad file must not stop the writer
                        log.exception("sandbox %s: writing its files failed", sid[:12])
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until the background writer has nothing left to write; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._pending and not self._busy, timeout)

    def _write_sid(self, sid: str, peer_cache: PeerCache | None = None) -> None:
        rec = self.state.sandbox(sid)
        if rec is None or rec.state == DELETING:
            return
        try:
            self._write_unlocked(rec, peer_cache)
        except OSError as e:
            log.error("sandbox %s: cannot write its files: %s", sid, e)

    def write_files(self, rec: SandboxRecord) -> None:
        with self._files_lock:
            self._write_unlocked(rec)

    def _write_unlocked(self, rec: SandboxRecord, peer_cache: PeerCache | None = None) -> None:
        hosts, resolv = self.render(rec, peer_cache)
        for path, text in ((rec.hosts_path, hosts), (rec.resolv_conf_path, resolv)):
            # Unchanged content is not rewritten (resolv.conf rarely changes at all).
            if self._written.get(path) != text or not os.path.exists(path):
                write_atomic(Path(path), text)
                self._written[path] = text

    def render(self, rec: SandboxRecord, peer_cache: PeerCache | None = None) -> tuple[str, str]:
        """(hosts, resolv.conf) of a sandbox, from the records."""
        spec = rec.spec
        joined = [
            e
            for e in self.state.endpoints_in_sandbox(rec.id)
            if e.attachment is not None and e.attachment.state == JOINED
        ]
        drivers = {self._driver_of(e) for e in joined}
        host_mode = spec.host_network or DRIVER_HOST in drivers
        embedded = bool(self.resolver) and bool(drivers - {DRIVER_HOST, DRIVER_NULL})
        hostname = spec.hostname or spec.name or rec.id[:SHORT_ID]
        names = own_names(hostname, spec.domainname)

        own: list[HostEntry] = []
        primary = next((e for e in joined if e.spec.address or e.spec.address_ipv6), None)
        if primary is not None:
            own += [
                HostEntry(_bare(a), names)
                for a in (primary.spec.address, primary.spec.address_ipv6)
                if a
            ]

        peers: list[HostEntry] = []
        seen: set[HostEntry] = set()
        for ep in joined:
            for entry in self._peer_entries(rec.id, ep, peer_cache):
                if entry not in seen:
                    seen.add(entry)
                    peers.append(entry)

        base = read_text(self.host_hosts) if host_mode else None
        hosts = render_hosts(own, peers, spec.extra_hosts, base=base)
        ipv6 = any(e.spec.address_ipv6 for e in joined)
        resolv = render_resolv_conf(
            read_text(self.host_resolv_conf),
            spec.dns,
            ipv6=ipv6,
            host_namespace=host_mode,
            resolver=self.resolver if embedded else "",
        )
        return hosts, resolv

    def _driver_of(self, ep: EndpointRecord) -> str:
        net = self.state.network(ep.network_id)
        return net.spec.driver if net else ""

    def _peer_entries(
        self, sandbox_id: str, ep: EndpointRecord, peer_cache: PeerCache | None = None
    ) -> list[HostEntry]:
        """`IP\\tname name.network aliases...` for every other sandbox on ep's network,
        when that network keeps legacy hosts files; none otherwise (cnm-dns answers)."""
        net = self.state.network(ep.network_id)
        if net is None or not legacy_hosts(net.spec.options):
            return []
        if peer_cache is None:
            entries = self._network_entries(ep.network_id)
        elif ep.network_id in peer_cache:
            entries = peer_cache[ep.network_id]
        else:
            entries = peer_cache[ep.network_id] = self._network_entries(ep.network_id)
        return [entry for sid, entry in entries if sid != sandbox_id]

    def _network_entries(self, network_id: str) -> list[tuple[str, HostEntry]]:
        """(sandbox id, hosts entry) of every joined endpoint of a network, in address order."""
        net = self.state.network(network_id)
        if net is None:
            return []
        netname = net.spec.name or net.id[:SHORT_ID]
        out: list[tuple[str, HostEntry]] = []
        peers = sorted(
            self.state.endpoints_of_network(net.id),
            key=lambda e: (e.spec.address, e.spec.address_ipv6, e.id),
        )
        for peer in peers:
            att = peer.attachment
            if att is None or att.state != JOINED:
                continue
            name = peer.spec.name
            if not name:
                sb = self.state.sandbox(att.sandbox_id)
                name = (sb.spec.name if sb else "") or peer.id[:SHORT_ID]
            names = (name, f"{name}.{netname}", *peer.spec.aliases)
            out += [
                (att.sandbox_id, HostEntry(_bare(a), names))
                for a in (peer.spec.address, peer.spec.address_ipv6)
                if a
            ]
        return out

    # --- kernel view ----------------------------------------------------------------------

    def view(self, rec: SandboxRecord) -> SandboxView:
        """The sandbox with its interfaces, addresses and routes as the kernel reports them.

        A namespace that no longer exists, or that the runtime owns and cnm
        does not enter, has nothing to report: empty lists.
        """
        if rec.spec.runtime_moves_interfaces:
            return SandboxView(sandbox=rec)
        try:
            snap = osl.snapshot(netns=rec.key)
        except NotFound:
            return SandboxView(sandbox=rec)
        addrs: dict[str, list[str]] = {}
        for a in snap.addresses:
            addrs.setdefault(a.ifname, []).append(str(a.address))
        interfaces = tuple(
            InterfaceView(
                name=link.name,
                mac=link.mac or "",
                mtu=link.mtu,
                addresses=tuple(addrs.get(link.name, ())),
                up=link.up,
            )
            for link in snap.links
        )
        routes = tuple(
            RouteView(
                destination=str(r.dst),
                gateway=str(r.gateway) if r.gateway else "",
                interface=r.ifname or "",
            )
            for r in snap.routes
        )
        return SandboxView(sandbox=rec, interfaces=interfaces, routes=routes)

    def ready(self, rec: SandboxRecord) -> SandboxRecord:
        return dataclasses.replace(rec, state=READY)
