"""`Firewall`: cnm's desired firewall state for one host, kept true in the kernel.

The object holds the desired state (bridge networks, bridge ports of ICC-off
networks, published ports) and is the only writer of cnm's nftables tables.
Every public mutation checks its input first (bridge networks are validated when
built; published ports come validated from the driver), then makes ONE nftables
transaction, and adopts the new state only when the kernel accepted it; a
refused change leaves both the kernel and the object as they were.

Which namespace: `Firewall(netns=None)` works on the namespace of the calling
process, which is what the driver service wants (it runs in the host's
namespace, one process per host). Tests and tools pass a namespace name or
path instead: the libnftables context, the generation socket and the /proc/sys
writes are opened inside it by `osl.nsenter.run_in_netns` on a disposable
thread, so no thread of the caller ever changes namespace and a call costs
the same as in the own namespace.

Self-healing: `ensure()` re-creates tables, chains, rules, sets and every
element from the desired state when the kernel differs (someone ran `nft
flush ruleset`, reloaded the host firewall, or edited cnm's tables). Whether
to look at all is decided by the ruleset generation id (see `genid`): when no
one else committed since the firewall last verified the kernel, nothing is
listed. `start_watcher()` calls ensure() every second on a thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from driver_service.osl import validate
from driver_service.osl.nsenter import NetnsRef
from services.errors import AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound
from services.values.ports import PortBinding

from . import ruleset, sysctl, verify
from .backend import Backend, NftError, open_backend
from .genid import GenerationReader
from .model import BridgeNetwork, FirewallState, MappingKey, PortMapping, mapping_sort_key
from .watcher import Watcher

log = logging.getLogger(__name__)

Json = dict[str, Any]


@dataclass(frozen=True)
class _State:
    """The desired state; never mutated, each change builds a new one."""

    networks: dict[str, BridgeNetwork] = field(default_factory=dict)
    ports: dict[str, str] = field(default_factory=dict)  # bridge port -> network id
    mappings: dict[MappingKey, PortMapping] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.networks and not self.mappings

    def icc_off_ports(self) -> list[str]:
        return [p for p, nid in self.ports.items() if not self.networks[nid].icc]

    def set_elements(self) -> dict[tuple[str, str], list[Any]]:
        return ruleset.network_elements(self.networks.values(), self.icc_off_ports())

    def full_commands(self) -> list[Json]:
        return [
            *ruleset.rules_commands(),
            *ruleset.network_sets_commands(self.set_elements()),
            *ruleset.mappings_commands(self.mappings.values()),
        ]

    def expected_elements(self) -> verify.Elements:
        return verify.expected_elements(
            self.set_elements(), ruleset.mapping_elements(self.mappings.values())
        )


class Firewall:
    """cnm's nftables firewall and port mapper for the host namespace `netns`."""

    def __init__(
        self,
        netns: NetnsRef = None,
        *,
        backend: str | None = None,
        manage_sysctls: bool = True,
    ) -> None:
        """`backend`: "libnftables" (default when loadable) or "nft". With
        `manage_sysctls`, adding a network turns on forwarding and sets
        route_localnet on its bridge (needed for ports published on 127.0.0.1)."""
        self._netns = netns
        self._backend: Backend = open_backend(backend, netns)
        self._gen = GenerationReader(netns)
        self._manage_sysctls = manage_sysctls
        self._lock = threading.RLock()
        self._state = _State()
        # The kernel's rendering of cnm's tables without elements, right after our last full sync.
        self._structure: str | None = None
        # The ruleset generation at which the kernel was known to match the desired state.
        self._verified_gen: int | None = None
        self._watcher: Watcher | None = None

    # --- networks --------------------------------------------------------------------------

    def add_network(self, network: BridgeNetwork) -> None:
        """Start filtering/masquerading for `network`. Idempotent; a changed definition
        for the same id replaces the old one. A bridge already used by another network
        is ALREADY_EXISTS."""
        with self._lock:
            if self._state.networks.get(network.network_id) == network:
                return
            for other in self._state.networks.values():
                if other.bridge == network.bridge and other.network_id != network.network_id:
                    raise AlreadyExists(
                        f"bridge {network.bridge!r} is already used by network {other.network_id!r}"
                    )
            new = replace(
                self._state, networks={**self._state.networks, network.network_id: network}
            )
            self._change(new, ruleset.network_sets_commands(new.set_elements()))
            if self._manage_sysctls:
                self._network_sysctls(network)

    def remove_network(self, network_id: str) -> None:
        """Forget a network, its bridge ports and the port mappings into its subnets.
        Removing the last network (with no mapping left) deletes cnm's tables.
        Idempotent: an unknown network is success."""
        with self._lock:
            net = self._state.networks.get(network_id)
            if net is None:
                return
            gone = [m for m in self._state.mappings.values() if net.contains(m.container_ip)]
            new = _State(
                networks={k: v for k, v in self._state.networks.items() if k != network_id},
                ports={p: n for p, n in self._state.ports.items() if n != network_id},
                mappings={k: m for k, m in self._state.mappings.items() if m not in gone},
            )
            delta = ruleset.network_sets_commands(new.set_elements())
            for m in gone:
                delta += ruleset.delete_elements(
                    ruleset.INET, ruleset.mapping_map(m), [ruleset.mapping_key_element(m)]
                )
            self._change(new, delta)
            if self._manage_sysctls and not net.internal:
                self._best_effort_route_localnet(net.bridge, False)

    def networks(self) -> list[BridgeNetwork]:
        with self._lock:
            return sorted(self._state.networks.values(), key=lambda n: n.network_id)

    # --- bridge ports (ICC) ---------------------------------------------------------------

    def attach_port(self, network_id: str, port: str) -> None:
        """Register a sandbox's bridge port (the host end of its veth) on `network_id`.
        Only ports of ICC-off networks reach the kernel. Idempotent; NOT_FOUND for an
        unknown network."""
        port = validate.ifname(port, "bridge port name")
        with self._lock:
            if network_id not in self._state.networks:
                raise NotFound(f"network {network_id!r} is not known to the firewall")
            old_net = self._state.ports.get(port)
            if old_net == network_id:
                return
            new = replace(self._state, ports={**self._state.ports, port: network_id})
            delta: list[Json] = []
            if old_net is not None and not self._state.networks[old_net].icc:
                delta += ruleset.delete_elements(ruleset.BRIDGE, ruleset.S_ICC_OFF, [port])
            if not new.networks[network_id].icc:
                delta += ruleset.add_elements(ruleset.BRIDGE, ruleset.S_ICC_OFF, [port])
            self._change(new, delta)

    def detach_port(self, port: str) -> None:
        """Forget a bridge port. Idempotent: an unknown port is success."""
        port = validate.ifname(port, "bridge port name")
        with self._lock:
            network_id = self._state.ports.get(port)
            if network_id is None:
                return
            new = replace(
                self._state, ports={p: n for p, n in self._state.ports.items() if p != port}
            )
            delta: list[Json] = []
            if not self._state.networks[network_id].icc:
                delta = ruleset.delete_elements(ruleset.BRIDGE, ruleset.S_ICC_OFF, [port])
            self._change(new, delta)

    # --- port mapper ----------------------------------------------------------------------

    def add_port_mapping(self, published: PortBinding) -> None:
        """Publish a port: one map element, DNAT from outside, from the host and hairpin.
        Idempotent for the identical mapping. ALREADY_EXISTS when the host binding is
        taken (or overlaps a 0.0.0.0 / :: binding of the same port); FAILED_PRECONDITION
        when the container address is on an internal network. `published` is trusted
        (validated at the driver's edge, see `model.PortMapping`)."""
        mapping = PortMapping.of(published)
        with self._lock:
            if self._state.mappings.get(mapping.key) == mapping:
                return
            _check_mapping(self._state, mapping)
            new = replace(self._state, mappings={**self._state.mappings, mapping.key: mapping})
            delta = ruleset.add_elements(
                ruleset.INET, ruleset.mapping_map(mapping), [ruleset.mapping_element(mapping)]
            )
            self._change(new, delta)

    def remove_port_mapping(self, published: PortBinding) -> None:
        """Unpublish a mapping. Idempotent: absent is success, and a different mapping
        holding the same host binding is left alone."""
        mapping = PortMapping.of(published)
        with self._lock:
            if self._state.mappings.get(mapping.key) != mapping:
                return
            new = replace(
                self._state,
                mappings={k: m for k, m in self._state.mappings.items() if k != mapping.key},
            )
            delta = ruleset.delete_elements(
                ruleset.INET, ruleset.mapping_map(mapping), [ruleset.mapping_key_element(mapping)]
            )
            self._change(new, delta)

    def list_port_mappings(self) -> list[PortMapping]:
        with self._lock:
            return sorted(self._state.mappings.values(), key=mapping_sort_key)

    # --- whole state ----------------------------------------------------------------------

    def state(self) -> FirewallState:
        with self._lock:
            s = self._state
            return FirewallState(
                networks=tuple(sorted(s.networks.values(), key=lambda n: n.network_id)),
                ports=tuple(sorted(s.ports.items())),
                mappings=tuple(m.binding for m in self.list_port_mappings()),
            )

    def load(self, state: FirewallState) -> None:
        """Replace the whole desired state (a restarted driver, from its store) and make
        the kernel match it in one sync. Validated as a whole before anything changes."""
        new = _State()
        for net in state.networks:
            if net.network_id in new.networks or any(
                n.bridge == net.bridge for n in new.networks.values()
            ):
                raise InvalidArgument(f"duplicate network or bridge in state: {net.network_id!r}")
            new.networks[net.network_id] = net
        for port, network_id in state.ports:
            if network_id not in new.networks:
                raise InvalidArgument(f"port {port!r} refers to unknown network {network_id!r}")
            new.ports[validate.ifname(port, "bridge port name")] = network_id
        for m in map(PortMapping.of, state.mappings):
            _check_mapping(new, m)
            new.mappings[m.key] = m
        with self._lock:
            self._guard(lambda: self._delete_tables() if new.empty else self._sync(new))
            self._state = new
            if self._manage_sysctls:
                for net in new.networks.values():
                    self._network_sysctls(net)

    def in_sync(self) -> bool:
        """True when the kernel holds exactly the desired state (lists the tables)."""
        with self._lock:
            if self._state.empty:
                return not self._tables_exist()
            return self._matches_kernel()

    def ensure(self, *, force: bool = False) -> bool:
        """Make the kernel match the desired state; True when something was repaired.

        Cheap when nothing changed: one generation-id query. Otherwise cnm's tables are
        listed and compared, and on any difference rebuilt (one transaction for rules and
        elements; see `ruleset` for why the inert skeleton goes first)."""
        with self._lock:
            gen = self._gen.read()
            if not force and gen == self._verified_gen:
                return False
            if self._state.empty:
                if not self._tables_exist():
                    self._verified_gen = gen
                    return False
                self._guard(self._delete_tables)
                return True
            if not force and self._matches_kernel():
                if self._gen.read() == gen:
                    self._verified_gen = gen
                return False
            self._guard(lambda: self._sync(self._state))
            if self._manage_sysctls:
                for net in self._state.networks.values():
                    self._network_sysctls(net)
            return True

    def start_watcher(self, interval: float = 1.0) -> None:
        """Call ensure() every `interval` seconds on a daemon thread until stop_watcher()."""
        with self._lock:
            if self._watcher is None:
                self._watcher = Watcher(self, interval)
                self._watcher.start()

    def stop_watcher(self) -> None:
        with self._lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    def enable_forwarding(self, *, ipv4: bool = True, ipv6: bool = True) -> None:
        sysctl.enable_forwarding(ipv4=ipv4, ipv6=ipv6, netns=self._netns)

    def cleanup(self) -> None:
        """Remove everything cnm made: both tables, route_localnet on known bridges.
        Forgets the desired state. Idempotent."""
        self.stop_watcher()
        with self._lock:
            networks = list(self._state.networks.values())
            self._guard(self._delete_tables)
            self._state = _State()
        if self._manage_sysctls:
            for net in networks:
                if not net.internal:
                    self._best_effort_route_localnet(net.bridge, False)

    def close(self) -> None:
        """Stop the watcher and release sockets; the kernel state stays."""
        self.stop_watcher()
        with self._lock:
            self._backend.close()
            self._gen.close()

    def __enter__(self) -> Firewall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------

    def _change(self, new: _State, delta: list[Json]) -> None:
        """Make the kernel match `new`, then adopt it. `delta` is the transaction that
        does so when the kernel matches the current state; anything unexpected falls
        back to a full sync of `new`."""
        self._guard(lambda: self._transition(new, delta))
        self._state = new

    def _transition(self, new: _State, delta: list[Json]) -> None:
        if new.empty:
            self._delete_tables()
            return
        if self._state.empty or self._structure is None:
            self._sync(new)
            return
        if not delta:
            return
        before = self._gen.read()
        try:
            self._backend.apply(delta)
        except NftError as e:
            log.warning("incremental nftables update refused (%s); re-syncing cnm's tables", e)
            self._sync(new)
            return
        if before == self._verified_gen and self._gen.read() == before + 1:
            self._verified_gen = before + 1

    def _sync(self, state: _State) -> None:
        """Skeleton (inert, idempotent) then rules + every element in one transaction,
        then remember the kernel's rendering of the structure as the reference."""
        self._structure = None
        try:
            clean = self._apply_full(state, ruleset.SKELETON)
        except NftError as e:
            # A declaration was changed behind our back (e.g. a chain's hook): start afresh.
            log.warning("cnm's nftables tables are damaged (%s); re-creating them", e)
            clean = self._apply_full(state, ruleset.RECREATE_SKELETON)
        if not clean:
            return  # someone else committed meanwhile: the next ensure() syncs again
        gen = self._gen.read()
        listing = self._listing()
        if listing is None or self._gen.read() != gen:
            return
        structure, elements = verify.split_listing(listing)
        if elements == state.expected_elements():
            self._structure = structure
            self._verified_gen = gen

    def _apply_full(self, state: _State, skeleton: str) -> bool:
        """Two transactions; True when no one else committed in between."""
        before = self._gen.read()
        self._backend.apply_script(skeleton)
        self._backend.apply(state.full_commands())
        return self._gen.read() == before + 2

    def _delete_tables(self) -> None:
        self._backend.apply_script(ruleset.DELETE_TABLES)
        self._structure = None
        self._verified_gen = self._gen.read()

    def _tables_exist(self) -> bool:
        return any(
            self._backend.list_table(f, ruleset.TABLE) is not None
            for f in (ruleset.INET, ruleset.BRIDGE)
        )

    def _matches_kernel(self) -> bool:
        if self._structure is None:
            return False
        listing = self._listing()
        if listing is None:
            return False
        structure, elements = verify.split_listing(listing)
        return structure == self._structure and elements == self._state.expected_elements()

    def _listing(self) -> list[list[Json]] | None:
        """cnm's table in both families as nft lists it; None when either is missing."""
        listing = []
        for family in (ruleset.INET, ruleset.BRIDGE):
            tables = self._backend.list_json(family, ruleset.TABLE)
            if tables is None:
                return None
            listing.append(tables)
        return listing

    @staticmethod
    def _guard(fn: Any) -> None:
        try:
            fn()
        except NftError as e:
            raise Internal(f"nftables refused cnm's firewall update: {e}") from e

    def _network_sysctls(self, net: BridgeNetwork) -> None:
        if net.internal:
            return
        try:
            sysctl.enable_forwarding(
                ipv4=True, ipv6=any(s.version == 6 for s in net.subnets), netns=self._netns
            )
        except OSError as e:
            log.warning("cannot enable forwarding: %s", e)
        self._best_effort_route_localnet(net.bridge, True)

    def _best_effort_route_localnet(self, bridge: str, enabled: bool) -> None:
        try:
            if not sysctl.set_route_localnet(bridge, enabled, self._netns):
                log.info("bridge %s does not exist (yet); route_localnet not set", bridge)
        except OSError as e:
            log.warning("cannot set route_localnet on %s: %s", bridge, e)


def _check_mapping(state: _State, m: PortMapping) -> None:
    """Conflicts with existing mappings, and publishing into internal networks."""
    taken = state.mappings.get(m.key)
    if taken is not None and taken != m:
        raise AlreadyExists(
            f"Bind for {m.host_binding()} failed: port is already allocated",
            reason="PORT_ALREADY_ALLOCATED",
            metadata={"binding": m.host_binding(), "protocol": m.protocol},
        )
    for other in state.mappings.values():
        if (
            other.version == m.version
            and other.protocol == m.protocol
            and other.host_port == m.host_port
            and other.all_addresses != m.all_addresses
        ):
            raise AlreadyExists(
                f"Bind for {m.host_binding()} failed: port is already allocated "
                f"(overlaps {other.host_binding()})",
                reason="PORT_ALREADY_ALLOCATED",
                metadata={"binding": m.host_binding(), "protocol": m.protocol},
            )
    for net in state.networks.values():
        if net.internal and net.contains(m.container_ip):
            raise FailedPrecondition(
                f"network {net.network_id!r} is internal: ports cannot be published ({m})",
                reason="INTERNAL_NETWORK",
            )
