"""Join / Leave of existing endpoints, Connect / Disconnect (create + join,
leave + delete in one call), each with its intent written first."""

from __future__ import annotations

import logging

from controller_service import builtin, rules
from controller_service.context import Context, describe
from controller_service.endpoints import (
    Endpoints,
    check_sandbox_still,
    event_attrs,
    joined_fields,
    sandbox_still_reads,
)
from controller_service.events import EventType
from controller_service.models import Endpoint, EndpointSpec, EndpointState, Network
from controller_service.networks import Networks
from controller_service.repository import Tx
from controller_service.rollback import Undo, crash_point
from services.errors import CnmError, FailedPrecondition, NotFound

log = logging.getLogger(__name__)


class Joins:
    def __init__(self, ctx: Context, networks: Networks, endpoints: Endpoints) -> None:
        self.ctx = ctx
        self.networks = networks
        self.endpoints = endpoints

    def _network_of(self, ep: Endpoint) -> Network:
        net = self.ctx.repo.network(ep.network_id)
        if net is None:
            raise NotFound(f"network {ep.network_name!r} of {describe(ep)} no longer exists")
        return net

    # ------------------------------------------------------------------ join

    def join(self, endpoint: str, sandbox: str, options: dict[str, str]) -> Endpoint:
        """Idempotent for the same pair; FAILED_PRECONDITION per rules.check_join."""
        ctx = self.ctx
        ep = ctx.endpoint(endpoint)
        sb = ctx.sandbox(sandbox)
        if ep.state is EndpointState.JOINED and ep.sandbox_id == sb.id:
            return ep
        net = self._network_of(ep)
        on = ctx.repo.sandbox_endpoints(sb.id)
        rules.check_join(net, ep, sb, on)
        builtin.check_host_mode(net, sb)
        builtin.check_exclusive(net, ctx.repo.networks(on))
        reached = ctx.reachable(sb.host)
        # Global scope: the endpoint reaches a driver only now, on the sandbox's host.
        needs_driver_endpoint = not ep.host
        original_host = ep.host

        def check(tx: Tx, current: Endpoint) -> None:
            fresh = tx.sandbox(sb.id)
            if fresh is None:
                raise NotFound(f"no such sandbox {sandbox!r}", reason="SANDBOX_NOT_FOUND")
            rules.check_join(net, current, fresh, tx.sandbox_endpoints(sb.id))

        ep = ctx.transition(
            ep,
            lambda tx, new: tx.attach(sb.id, net.id, ep.id),
            check=check,
            state=EndpointState.JOINING,
            sandbox_id=sb.id,
            host=sb.host,
            **ctx.intent(),
        )
        with Undo() as undo:
            undo.step("undo join intent", self._unjoin_or_orphan, ep, undo, original_host)
            driver = ctx.drivers.for_host(reached)  # READY and probed just above
            if needs_driver_endpoint:
                if builtin.follows_sandbox(net):
                    self.networks.ensure_on_host(net, sb.host)
                undo.step("driver DeleteEndpoint", driver.delete_endpoint, net.id, ep.id)
                mac = driver.create_endpoint(ep)
                ep = ctx.transition(ep, mac_address=mac)
            undo.step("driver Leave", driver.leave, net.id, ep.id, sb.id)
            result = driver.join(net.id, ep.id, sb.id, options)
            crash_point("after_join")
            ep = ctx.transition(
                ep,
                lambda tx, new: tx.event(
                    EventType.ENDPOINT_JOINED, new.id, new.name, event_attrs(new)
                ),
                check=check_sandbox_still,
                reads=sandbox_still_reads(ep),
                state=EndpointState.JOINED,
                **joined_fields(result),
                **ctx.settled(),
            )
            undo.commit()
        log.info("joined endpoint %s to sandbox %s", ep.name, sb.name)
        return ep

    def _unjoin_or_orphan(self, ep: Endpoint, undo: Undo, original_host: str) -> None:
        if undo.failures:
            self.ctx.orphan(ep)
            return
        current = self.ctx.repo.endpoint(ep.id)
        if current is not None:
            self._back_to_ready(current, host=original_host or current.host, event=False)

    def rollback_join(self, ep: Endpoint) -> None:
        """A join whose controller died: undone on the driver (Leave is
        idempotent); the endpoint stays recorded on its host for a later delete."""
        try:
            self.ctx.driver_any_state(ep.host).leave(ep.network_id, ep.id, ep.sandbox_id)
        except CnmError:
            self.ctx.orphan(ep)
            raise
        self._back_to_ready(ep, host=ep.host, event=False)

    # ------------------------------------------------------------------ leave

    def leave(self, endpoint: str, sandbox: str) -> Endpoint:
        """Idempotent: success when the endpoint is not joined."""
        ctx = self.ctx
        ep = ctx.endpoint(endpoint)
        sb = ctx.sandbox(sandbox) if sandbox else None
        if ep.state is EndpointState.READY:
            return ep
        if sb is not None and ep.sandbox_id != sb.id:
            raise FailedPrecondition(
                f"{describe(ep)} is joined to sandbox {ep.sandbox_id[:12]}, not {sb.name!r}",
                reason="ENDPOINT_JOINED_ELSEWHERE",
            )
        return self.leave_endpoint(ep)

    def leave_endpoint(self, ep: Endpoint) -> Endpoint:
        ctx = self.ctx
        if ep.state is not EndpointState.JOINED:
            raise FailedPrecondition(
                f"{describe(ep)} is {ep.state.value}; retry when it settles", reason="ENDPOINT_BUSY"
            )
        reached = ctx.reachable(ep.host)
        ep = ctx.transition(ep, state=EndpointState.LEAVING, **ctx.intent())
        try:
            ctx.drivers.for_host(reached).leave(ep.network_id, ep.id, ep.sandbox_id)
        except CnmError:
            # Nothing decided yet: back to joined, the caller may retry (Leave is idempotent).
            try:
                ctx.transition(ep, state=EndpointState.JOINED, **ctx.settled())
            except CnmError:
                ctx.orphan(ep)
            raise
        return self._back_to_ready(ep, host=ep.host, event=True)

    def finish_leave(self, ep: Endpoint) -> None:
        try:
            self.ctx.driver_any_state(ep.host).leave(ep.network_id, ep.id, ep.sandbox_id)
        except CnmError:
            self.ctx.orphan(ep)
            raise
        self._back_to_ready(ep, host=ep.host, event=True)

    def _back_to_ready(self, ep: Endpoint, *, host: str, event: bool) -> Endpoint:
        sb_id = ep.sandbox_id
        ours: list[bool] = []

        def check(tx: Tx, current: Endpoint) -> None:
            # Only our own entry goes: the sandbox may have another endpoint there by now.
            ours[:] = [tx.sandbox_endpoints(sb_id).get(ep.network_id) == ep.id]

        def extra(tx: Tx, new: Endpoint) -> None:
            if ours and ours[0]:
                tx.detach(sb_id, ep.network_id)
            if event:
                tx.event(EventType.ENDPOINT_LEFT, ep.id, ep.name, event_attrs(ep))

        return self.ctx.transition(
            ep,
            extra,
            check=check,
            state=EndpointState.READY,
            sandbox_id="",
            host=host,
            gateway="",
            gateway_ipv6="",
            interface_name="",
            host_interface_name="",
            published_ports=(),
            **self.ctx.settled(),
        )

    # ------------------------------------------------------------------ connect / disconnect

    def connect(self, network: str, sandbox: str, spec: EndpointSpec, ep_id: str) -> Endpoint:
        # Network, sandbox and hosts in one read; what it missed (a prefix,
        # or nothing there) is resolved the long way, the sandbox first.
        net, sb, hosts = self.ctx.repo.first_reads(network, sandbox)
        sb = sb or self.ctx.sandbox(sandbox)
        return self.endpoints.create(net or network, spec, ep_id, sandbox=sb, hosts=hosts)

    def disconnect(self, network: str, sandbox: str) -> None:
        ctx = self.ctx
        net, sb, hosts = ctx.repo.first_reads(network, sandbox)
        net = net or ctx.network(network)
        sb = sb or ctx.sandbox(sandbox)
        # The host must be READY now; its driver is probed just before the first write.
        verdict = (sb.host, ctx.reachable_later(sb.host, hosts)) if sb.host else None
        ep = ctx.repo.sandbox_endpoint(sb.id, net.id)
        if ep is None:
            raise NotFound(
                f"sandbox {sb.name!r} is not connected to network {net.name!r}",
                reason="NOT_CONNECTED",
            )
        self.endpoints.delete_endpoint(ep, verdict, net)
