"""Endpoints: create (intent, addresses owned by the endpoint id, driver, and
for Connect the join too, all under one intent), get, list, delete."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from controller_service import builtin, config_networks, listing, rules, validate
from controller_service.context import Context, describe
from controller_service.events import EventType
from controller_service.hosts import HostRecords
from controller_service.models import (
    Endpoint,
    EndpointSpec,
    EndpointState,
    Host,
    Network,
    Page,
    PoolAllocation,
    Sandbox,
)
from controller_service.networks import Networks
from controller_service.repository import Read, Tx
from controller_service.rollback import Undo, crash_point
from services.errors import (
    AlreadyExists,
    CnmError,
    Exhausted,
    FailedPrecondition,
    InvalidArgument,
    MultiError,
    NotFound,
)

log = logging.getLogger(__name__)

_BUSY = (EndpointState.CREATING, EndpointState.JOINING, EndpointState.LEAVING)


def event_attrs(ep: Endpoint, sandbox_id: str = "") -> dict[str, str]:
    attrs = {"network": ep.network_id, "network_name": ep.network_name, "host": ep.host}
    if sandbox_id or ep.sandbox_id:
        attrs["sandbox"] = sandbox_id or ep.sandbox_id
    return attrs


def joined_fields(result: Any) -> dict[str, Any]:
    """Endpoint fields recorded from a driver's Join response."""
    fields: dict[str, Any] = {
        "interface_name": result.interface_name,
        "host_interface_name": result.host_interface_name,
        "gateway": result.gateway,
        "gateway_ipv6": result.gateway_ipv6,
        "published_ports": result.published_ports,
    }
    if result.mac_address:
        fields["mac_address"] = result.mac_address
    return fields


def sandbox_still_reads(ep: Endpoint) -> tuple[Read, ...]:
    """What check_sandbox_still reads (to read it with the endpoint)."""
    return (Read.record("sb", ep.sandbox_id),) if ep.sandbox_id else ()


def check_sandbox_still(tx: Tx, ep: Endpoint) -> None:
    """The endpoint's sandbox still exists and is ready: one deleted while we
    joined it fails the join, and the rollback leaves."""
    if ep.sandbox_id:
        sb = tx.sandbox(ep.sandbox_id)
        if sb is None:
            raise NotFound(f"sandbox {ep.sandbox_id[:12]} was deleted meanwhile")
        rules.check_sandbox_ready(sb)


def _pool_of(pools: tuple[PoolAllocation, ...], address: str) -> PoolAllocation | None:
    addr = ipaddress.ip_address(address.split("/")[0])
    for pool in pools:
        net = ipaddress.ip_network(pool.subnet)
        if addr.version == net.version and addr in net:
            return pool
    return None


class Endpoints:
    def __init__(self, ctx: Context, networks: Networks) -> None:
        self.ctx = ctx
        self.networks = networks

    # ------------------------------------------------------------------ create

    def create(
        self,
        network: str | Network,
        spec: EndpointSpec,
        ep_id: str,
        *,
        sandbox: Sandbox | None = None,
        join_options: dict[str, str] | None = None,
        hosts: HostRecords | None = None,
    ) -> Endpoint:
        """Creates an endpoint; with `sandbox` also joins it (Connect), so a
        crash anywhere rolls the whole connection back. `network`: its name
        or id, or the network as the caller just read it (Repository.first_reads,
        with `hosts`)."""
        ctx = self.ctx
        spec = validate.endpoint_spec(spec)
        net = network if isinstance(network, Network) else ctx.network(network)
        config_networks.check_takes_endpoints(net)
        rules.check_network_ready(net)
        self._check_static(net, spec)
        if net.driver == "host" and spec.port_bindings:
            # Docker's warning: the host's ports are the container's already.
            log.warning("Published ports are discarded when using host network mode")
            spec = dataclasses.replace(spec, port_bindings=())
        host = (sandbox.host if sandbox else "") if builtin.follows_sandbox(net) else net.host
        # The host must be READY now; its driver is probed just before the first write.
        verdict = ctx.reachable_later(host, hosts) if host else None
        if sandbox is not None:
            rules.check_sandbox_ready(sandbox)
            rules.check_same_host(net, sandbox)
        ep = Endpoint(
            id=ep_id,
            name=spec.name or (sandbox.name if sandbox else ep_id[:12]),
            network_id=net.id,
            network_name=net.name,
            sandbox_id=sandbox.id if sandbox else "",
            mac_address=spec.mac_address,
            aliases=spec.aliases,
            port_bindings=spec.port_bindings,
            exposed_ports=spec.exposed_ports,
            options=spec.options,
            state=EndpointState.CREATING,
            host=host,
            implicit=sandbox is not None,
            created=ctx.now(),
            **ctx.intent(),
        )
        with Undo() as undo:
            # `reached`: the host as just judged READY (and probed): its driver
            # client below comes from it, without reading every host's heartbeat again.
            ep, reached = self._write_intent(ep, net, sandbox, verdict)
            undo.step("forget endpoint", self._forget_or_orphan, ep, undo)
            crash_point("endpoint_after_intent")
            v4 = self._address(net, ep, spec.ipv4_address, v6=False, undo=undo)
            v6 = self._address(net, ep, spec.ipv6_address, v6=True, undo=undo)
            crash_point("after_ipam")
            # The addresses are recorded with the final state, not in a write of
            # their own: a rollback (undo, or the reconciler's thorough one) frees
            # what IPAM holds under the endpoint's id, recorded or not.
            ep = dataclasses.replace(ep, ipv4_address=v4, ipv6_address=v6)
            changes: dict[str, Any] = {
                "state": EndpointState.READY,
                "ipv4_address": v4,
                "ipv6_address": v6,
            }
            if reached is not None:
                driver = ctx.drivers.for_host(reached)
                if builtin.follows_sandbox(net):
                    self.networks.ensure_on_host(net, host)
                # Undo registered before the call: a timed-out call may still have
                # happened, and the driver's DeleteEndpoint (which leaves first)
                # is idempotent.
                undo.step("driver DeleteEndpoint", driver.delete_endpoint, net.id, ep.id)
                if sandbox is None:
                    changes["mac_address"] = driver.create_endpoint(ep)
                    crash_point("endpoint_after_driver")
                else:
                    # One driver call creates and joins (Connect).
                    result = driver.connect(ep, sandbox.id, join_options or {})
                    crash_point("endpoint_after_driver")
                    crash_point("after_join")
                    changes.update(joined_fields(result), state=EndpointState.JOINED)
            ep = ctx.transition(
                ep,
                lambda tx, new: self._created_events(tx, new),
                check=check_sandbox_still,
                reads=sandbox_still_reads(ep),
                **changes,
                **ctx.settled(),
            )
            undo.commit()
        log.info("created endpoint %s (%s) on network %s", ep.name, ep.id, net.name)
        return ep

    def _check_static(self, net: Network, spec: EndpointSpec) -> None:
        for addr, v6 in ((spec.ipv4_address, False), (spec.ipv6_address, True)):
            if not addr:
                continue
            pools = tuple(p for p in net.pools if p.v6 == v6)
            family = "IPv6" if v6 else "IPv4"
            if not pools:
                raise InvalidArgument(
                    f"network {net.name!r} has no {family} subnet for address {addr}",
                    reason="ADDRESS_OUTSIDE_POOL",
                )
            if _pool_of(pools, addr) is None:
                subnets = ", ".join(p.subnet for p in pools)
                raise InvalidArgument(
                    f"address {addr} is not in any subnet of network {net.name!r} ({subnets})",
                    reason="ADDRESS_OUTSIDE_POOL",
                )

    def _write_intent(
        self,
        ep: Endpoint,
        net: Network,
        sandbox: Sandbox | None,
        verdict: Callable[[], Host] | None,
    ) -> tuple[Endpoint, Host | None]:
        """The endpoint's record, once what the connection needs holds and the
        driver's health probe (`verdict`) answered: a refusal, or a host that
        does not answer, changes nothing."""
        reads = [Read.record("net", net.id), Read.endpoint_name(net.id, ep.name)]
        if sandbox is not None:
            reads += [Read.record("sb", sandbox.id), Read.sandbox_endpoints(sandbox.id)]

        def fn(tx: Tx) -> tuple[Endpoint, Host | None]:
            tx.prefetch(reads)
            current = tx.network(net.id)
            if current is None:
                raise NotFound(f"no such network {net.name!r}", reason="NETWORK_NOT_FOUND")
            # The network record is watched (tx.network): a concurrent delete
            # changes it, and that delete watches the endpoint set we add to.
            rules.check_network_ready(current)
            if sandbox is not None:
                sb = tx.sandbox(sandbox.id)
                if sb is None:
                    raise NotFound(f"no such sandbox {sandbox.name!r}", reason="SANDBOX_NOT_FOUND")
                rules.check_sandbox_ready(sb)
                on = tx.sandbox_endpoints(sb.id)
                rules.check_not_on_network(current, sb, on, state_of=_state_of(tx))
                builtin.check_host_mode(current, sb)
                builtin.check_exclusive(current, self.ctx.repo.networks(on))
            if tx.endpoint_id_by_name(net.id, ep.name):
                raise AlreadyExists(
                    f"endpoint name {ep.name!r} is already taken on network {net.name!r}",
                    reason="ENDPOINT_NAME_TAKEN",
                )
            reached = verdict() if verdict is not None else None
            tx.begin()
            tx.put(ep)
            tx.add_network_endpoint(net.id, ep.id)
            if sandbox is not None:
                tx.attach(sandbox.id, net.id, ep.id)
            return ep, reached

        return self.ctx.repo.tx(fn)

    def _created_events(self, tx: Tx, ep: Endpoint) -> None:
        tx.event(EventType.ENDPOINT_CREATED, ep.id, ep.name, event_attrs(ep))
        if ep.state is EndpointState.JOINED:
            tx.event(EventType.ENDPOINT_JOINED, ep.id, ep.name, event_attrs(ep))

    def _address(self, net: Network, ep: Endpoint, static: str, *, v6: bool, undo: Undo) -> str:
        """One address of the family from the network's pools, owned by the
        endpoint: the static one, else the first pool with room (as libnetwork)."""
        ipam = self.ctx.ipam
        pools = tuple(p for p in net.pools if p.v6 == v6)
        if not pools:
            return ""
        if static:
            pool = _pool_of(pools, static)
            assert pool is not None  # checked by _check_static
            candidates: tuple[PoolAllocation, ...] = (pool,)
        else:
            candidates = pools
        last: Exception | None = None
        for pool in candidates:
            try:
                addr = ipam.request_address(pool.pool_id, static, owner=ep.id)
            except Exhausted as e:
                last = e
                continue
            undo.step(f"release {addr}", ipam.release_address, pool.pool_id, addr)
            return addr
        assert last is not None
        raise Exhausted(
            f"network {net.name!r} has no free address: {last}", reason="POOL_EXHAUSTED"
        )

    def _forget_or_orphan(self, ep: Endpoint, undo: Undo) -> None:
        if not undo.failures:
            current = self.ctx.repo.endpoint(ep.id) or ep
            try:
                # A timed-out allocation may have happened all the same.
                self._release_addresses(current, thorough=True)
            except CnmError as e:
                undo.failures.append(e)
        if undo.failures:
            self.ctx.orphan(ep)
        else:
            self._forget(ep, events=False)

    # ------------------------------------------------------------------ read

    def get(self, text: str) -> Endpoint:
        return self.ctx.endpoint(text)

    def list(self, network: str, sandbox: str, page_size: int, token: str) -> Page[Endpoint]:
        repo = self.ctx.repo
        ids: set[str] | None = None
        if network:
            ids = repo.network_endpoint_ids(self.ctx.network(network).id)
        if sandbox:
            joined = set(repo.sandbox_endpoints(self.ctx.sandbox(sandbox).id).values())
            ids = joined if ids is None else ids & joined
        eps = repo.all_endpoints() if ids is None else repo.endpoints(sorted(ids))
        if sandbox:
            eps = [e for e in eps if e.state in (EndpointState.JOINED, EndpointState.LEAVING)]
        return listing.paginate(eps, lambda e: f"{e.name}\x00{e.id}", page_size, token)

    # ------------------------------------------------------------------ delete

    def delete(self, text: str) -> Endpoint:
        """Leaves first when joined; releases addresses; NOT_FOUND when missing."""
        return self.delete_endpoint(self.ctx.endpoint(text))

    def delete_endpoint(
        self,
        ep: Endpoint,
        verdict: tuple[str, Callable[[], Host]] | None = None,
        net: Network | None = None,
    ) -> Endpoint:
        """`verdict`: (host id, ctx.reachable_later of it) begun by the caller;
        `net`: the endpoint's network as the caller just read it."""
        ctx = self.ctx
        if ep.state in _BUSY:
            raise FailedPrecondition(
                f"{describe(ep)} is {ep.state.value}; retry when it settles", reason="ENDPOINT_BUSY"
            )
        reached = None  # UNAVAILABLE before any change
        if verdict is not None and ep.host and verdict[0] == ep.host:
            reached = verdict[1]()
        elif ep.host:
            reached = ctx.reachable(ep.host)
        ep = ctx.transition(ep, state=EndpointState.DELETING, **ctx.intent())
        self.finish_delete(ep, reached=reached, net=net)
        log.info("deleted endpoint %s (%s)", ep.name, ep.id)
        return ep

    def finish_delete(
        self,
        ep: Endpoint,
        *,
        thorough: bool = False,
        reached: Host | None = None,
        net: Network | None = None,
    ) -> None:
        """Driver Leave and DeleteEndpoint, addresses released, record gone;
        on failure the intent goes to the reconciler and the error is raised.
        `thorough`: also release addresses IPAM lists under the endpoint's id
        (a crash may have happened before they were recorded). `reached`: the
        endpoint's host as the caller just found it reachable; `net`: its
        network as read since the endpoint was (one with endpoints stays)."""
        ctx = self.ctx
        errors: list[Exception] = []
        if ep.host:
            try:
                if reached is not None and reached.id == ep.host:
                    driver = ctx.drivers.for_host(reached)
                else:
                    driver = ctx.driver_any_state(ep.host)
                # One call: the driver's DeleteEndpoint leaves a joined endpoint first.
                driver.delete_endpoint(ep.network_id, ep.id)
                if ep.sandbox_id:
                    crash_point("endpoint_delete_after_leave")
            except CnmError as e:
                errors.append(e)
        if not errors:
            try:
                self._release_addresses(ep, thorough, net)
            except CnmError as e:
                errors.append(e)
        if errors:
            ctx.orphan(ep)
            raise errors[0] if len(errors) == 1 else MultiError(errors)
        self._forget(ep, events=ep.state is EndpointState.DELETING)

    def rollback_create(self, ep: Endpoint) -> None:
        self.finish_delete(ep, thorough=True)

    def _release_addresses(self, ep: Endpoint, thorough: bool, net: Network | None = None) -> None:
        if net is None or net.id != ep.network_id:
            net = self.ctx.repo.network(ep.network_id)
        if net is None:
            return  # the network's pools, and every address in them, are gone
        ipam = self.ctx.ipam
        for addr in (ep.ipv4_address, ep.ipv6_address):
            pool = _pool_of(net.pools, addr) if addr else None
            if pool is not None:
                ipam.release_address(pool.pool_id, addr)
        if thorough:
            for pool in net.pools:
                for addr in ipam.addresses_owned_by(pool.pool_id, ep.id):
                    ipam.release_address(pool.pool_id, addr)

    def _forget(self, ep: Endpoint, *, events: bool) -> None:
        reads = [Read.record("ep", ep.id)]
        if ep.sandbox_id:
            reads.append(Read.sandbox_endpoints(ep.sandbox_id))

        def fn(tx: Tx) -> None:
            tx.prefetch(reads)
            current = tx.endpoint(ep.id)
            if current is None:
                return
            sb_id = current.sandbox_id
            joined_here = (
                bool(sb_id) and tx.sandbox_endpoints(sb_id).get(current.network_id) == ep.id
            )
            tx.begin()
            tx.remove(current)
            tx.remove_network_endpoint(current.network_id, ep.id)
            if joined_here:
                tx.detach(sb_id, current.network_id)
            if events:
                if current.sandbox_id:
                    tx.event(EventType.ENDPOINT_LEFT, ep.id, ep.name, event_attrs(current))
                tx.event(EventType.ENDPOINT_DELETED, ep.id, ep.name, event_attrs(current))

        self.ctx.repo.tx(fn)


def _state_of(tx: Tx) -> Callable[[str], EndpointState | None]:
    def state(endpoint_id: str) -> EndpointState | None:
        ep = tx.endpoint(endpoint_id)
        return ep.state if ep is not None else None

    return state
