"""The driver service's domain: networks, endpoints, joins and sandboxes on this host.

Every call follows the same shape: validate everything (nothing touched yet),
take the object's locks, record the intent in the store, make the kernel
change through the driver (which undoes its own partial work on failure),
record the result. A crash at any point leaves an intent that `reconcile.py`
finishes or undoes at the next start; a repeated call converges to the same
state (Create* of an identical object succeeds, Delete*/Leave of a missing
one succeeds).

The manager is libnetwork's controller-side sandbox logic for one host: it
chooses the interface name inside the sandbox (eth0, eth1, ...), gives the
default route to the first endpoint that offers a gateway (exactly one per
sandbox, handed over when that endpoint leaves) and keeps every affected
sandbox's hosts/resolv.conf current.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from driver_service import attachment_plan, not_found, option_keys, osl, specs
from driver_service.drivers.base import Driver, EndpointHooks
from driver_service.locks import Locks
from driver_service.models import (
    CREATING,
    DELETING,
    JOINED,
    LEAVING,
    READY,
    Attachment,
    Capability,
    EndpointRecord,
    EndpointSpec,
    JoinResult,
    NetworkRecord,
    NetworkSpec,
    PortBinding,
    SandboxRecord,
    SandboxSpec,
    SandboxView,
)
from driver_service.registry import Registry
from driver_service.sandbox import Sandboxes
from driver_service.state import State
from services.errors import (
    AlreadyExists,
    CnmError,
    FailedPrecondition,
    MultiError,
    NotFound,
)

log = logging.getLogger(__name__)


def _same_request(recorded: EndpointSpec, requested: EndpointSpec) -> bool:
    """A repeat of a request whose empty addresses the driver filled in (a
    remote plugin may) is the same request."""
    return recorded == dataclasses.replace(
        requested,
        address=requested.address or recorded.address,
        address_ipv6=requested.address_ipv6 or recorded.address_ipv6,
    )


class Manager:
    def __init__(self, state: State, registry: Registry, sandboxes: Sandboxes) -> None:
        self.state = state
        self.registry = registry
        self.sandboxes = sandboxes
        self.locks = Locks()
        # Endpoints a failed one-call Connect made and forgot again: the
        # controller's rollback DeleteEndpoint that follows then owes the
        # driver (a remote plugin) nothing. Memory only: after a restart such
        # a delete is forwarded quietly, as for any unknown endpoint.
        self._forgotten: dict[str, None] = {}

    def driver_of(self, net: NetworkRecord) -> Driver:
        return self.registry.get(net.spec.driver)

    # --- capabilities ---------------------------------------------------------------------

    def capabilities(self, driver: str = "") -> list[Capability]:
        return self.registry.capabilities(driver)

    # --- networks -------------------------------------------------------------------------

    def create_network(self, spec: NetworkSpec) -> NetworkRecord:
        spec = specs.network_spec(spec)
        driver = self.registry.get(spec.driver)
        option_keys.check_network(spec.driver, spec.options)
        with self.locks.network(spec.network_id):
            existing = self.state.network(spec.network_id)
            if existing is not None:
                if existing.state == READY:
                    if existing.spec == spec:
                        return existing
                    raise AlreadyExists(
                        f"network {spec.network_id!r} already exists on this host "
                        "with different parameters",
                        reason="NETWORK_EXISTS",
                        metadata={"network_id": spec.network_id},
                    )
                # An earlier attempt stopped half-way: undo it, then start afresh.
                self.remove_network(existing)
            others = [n for n in self.state.networks() if n.id != spec.network_id]
            data = driver.plan_network(spec, others)
            rec = NetworkRecord(spec=spec, state=CREATING, data=dict(data))
            self.state.put_network(rec)
            try:
                driver.create_network(rec)
            except BaseException:
                self._forget_network_quietly(rec.id)
                raise
            rec = dataclasses.replace(rec, state=READY)
            self.state.put_network(rec)
            log.info("network %s (%s) created", rec.id[:12], spec.driver)
            return rec

    def _forget_network_quietly(self, network_id: str) -> None:
        try:
            self.state.drop_network(network_id)
        except CnmError as e:
            log.error("network %s: could not drop its record after a failure: %s", network_id, e)

    def delete_network(self, network_id: str) -> None:
        specs.object_id("network", network_id)
        with self.locks.network(network_id):
            rec = self.state.network(network_id)
            if rec is None:
                return
            joined = [
                e.id[:12] for e in self.state.endpoints_of_network(network_id) if e.attachment
            ]
            if joined:
                raise FailedPrecondition(
                    f"network {network_id!r} has endpoints joined on this host: "
                    f"{', '.join(sorted(joined))}",
                    reason="NETWORK_IN_USE",
                    metadata={"network_id": network_id},
                )
            self.remove_network(rec)
            log.info("network %s deleted", network_id[:12])

    def remove_network(self, rec: NetworkRecord) -> None:
        """Intent, kernel teardown, then the records (the network's and its endpoints')."""
        if rec.state != DELETING:
            rec = dataclasses.replace(rec, state=DELETING)
            self.state.put_network(rec)
        driver = self.driver_of(rec)
        if isinstance(driver, EndpointHooks):
            for ep in self.state.endpoints_of_network(rec.id):
                driver.delete_endpoint(rec.id, ep.id)
        driver.delete_network(rec)
        for ep in self.state.endpoints_of_network(rec.id):
            self.state.drop_endpoint(ep.id)
        self.state.drop_network(rec.id)

    def _ready_network(self, network_id: str) -> NetworkRecord:
        rec = self.state.network(network_id)
        if rec is None or rec.state != READY:
            raise not_found.no_network(network_id)
        return rec

    # --- endpoints ------------------------------------------------------------------------

    def create_endpoint(self, spec: EndpointSpec) -> EndpointRecord:
        spec = specs.endpoint_spec(spec)
        with self.locks.endpoint(spec.endpoint_id):
            existing, rec = self._plan_endpoint(spec)
            if existing is not None:
                return existing
            self._record_new_endpoint(rec, rec)
            return rec

    def _plan_endpoint(self, spec: EndpointSpec) -> tuple[EndpointRecord | None, EndpointRecord]:
        """(the recorded endpoint of an identical earlier request, or None;
        the new record, not written yet: the driver's EndpointHooks have
        made it when the first is None). Under the endpoint's lock."""
        net = self._ready_network(spec.network_id)
        driver = self.driver_of(net)
        option_keys.check_endpoint(net.spec.driver, spec.options)
        hooks = driver if isinstance(driver, EndpointHooks) else None
        existing = self.state.endpoint(spec.endpoint_id)
        if existing is not None:
            if existing.spec == spec or (hooks and _same_request(existing.spec, spec)):
                return existing, existing
            raise AlreadyExists(
                f"endpoint {spec.endpoint_id!r} already exists with different parameters",
                reason="ENDPOINT_EXISTS",
                metadata={"endpoint_id": spec.endpoint_id},
            )
        rec = EndpointRecord(spec=spec, mac=driver.plan_endpoint(net, spec))
        if hooks is not None:
            rec = hooks.create_endpoint(net, rec)
        return None, rec

    def _record_new_endpoint(self, rec: EndpointRecord, written: EndpointRecord) -> None:
        """The first write of a new endpoint's record (`written`: `rec`, or
        `rec` with its join intent), once its network is still ready and its
        addresses free; on failure the driver's hooks forget it again."""
        try:
            with self.locks.network(rec.network_id):
                self._ready_network(rec.network_id)
                attachment_plan.check_addresses_free(self.state, rec.spec)
                self.state.put_endpoint(written)
        except BaseException:
            self._driver_forget_endpoint(rec.network_id, rec.id, quiet=True)
            raise

    def _driver_forget_endpoint(self, network_id: str, endpoint_id: str, *, quiet: bool) -> None:
        """Tell a driver with endpoint state of its own (EndpointHooks) to
        forget an endpoint; with `quiet`, failures are only logged."""
        net = self.state.network(network_id)
        try:
            driver = self.driver_of(net) if net is not None else None
            if isinstance(driver, EndpointHooks):
                driver.delete_endpoint(network_id, endpoint_id)
        except CnmError as e:
            if not quiet:
                raise
            log.warning("endpoint %s: the driver could not forget it: %s", endpoint_id[:12], e)

    def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        specs.object_id("network", network_id)
        specs.object_id("endpoint", endpoint_id)
        rec = self.state.endpoint(endpoint_id)
        if rec is None:
            if endpoint_id in self._forgotten:
                self._forgotten.pop(endpoint_id, None)
                return  # a failed Connect already made the driver forget it
            # A crash may have come between the driver's create and the record.
            self._driver_forget_endpoint(network_id, endpoint_id, quiet=True)
            return
        if rec.network_id != network_id:
            raise not_found.no_endpoint(endpoint_id, network_id)
        if rec.attachment is not None:
            self.leave(network_id, endpoint_id, rec.attachment.sandbox_id)
        with self.locks.endpoint(endpoint_id):
            rec = self.state.endpoint(endpoint_id)
            if rec is not None and rec.attachment is None:
                self._driver_forget_endpoint(network_id, endpoint_id, quiet=False)
                self.state.drop_endpoint(endpoint_id)

    def _endpoint(self, network_id: str, endpoint_id: str) -> EndpointRecord:
        rec = self.state.endpoint(endpoint_id)
        if rec is None or rec.network_id != network_id:
            raise not_found.no_endpoint(endpoint_id, network_id)
        return rec

    def endpoint_oper_info(
        self, network_id: str, endpoint_id: str
    ) -> tuple[Mapping[str, str], tuple[PortBinding, ...]]:
        specs.object_id("network", network_id)
        specs.object_id("endpoint", endpoint_id)
        ep = self._endpoint(network_id, endpoint_id)
        net = self._ready_network(network_id)
        ports = ep.attachment.port_bindings if ep.attachment else ()
        return self.driver_of(net).oper_info(net, ep), ports

    # --- join / leave ---------------------------------------------------------------------

    def join(
        self,
        network_id: str,
        endpoint_id: str,
        sandbox_id: str,
        options: Mapping[str, str] | None = None,
    ) -> JoinResult:
        """`options`: the caller's Join options, handed to the driver (Attachment.options)."""
        specs.object_id("network", network_id)
        specs.object_id("endpoint", endpoint_id)
        specs.object_id("sandbox", sandbox_id)
        with self.locks.sandbox(sandbox_id), self.locks.endpoint(endpoint_id):
            sb = self._ready_sandbox(sandbox_id)
            ep = self._endpoint(network_id, endpoint_id)
            result, changed = self._join_locked(ep, sb, options, new=False)
        if changed:
            self._refresh_network(network_id, sandbox_id)
        return result

    def _ready_sandbox(self, sandbox_id: str) -> SandboxRecord:
        sb = self.state.sandbox(sandbox_id)
        if sb is None or sb.state != READY:
            raise not_found.no_sandbox(sandbox_id)
        return sb

    def _join_locked(
        self,
        ep: EndpointRecord,
        sb: SandboxRecord,
        options: Mapping[str, str] | None,
        *,
        new: bool,
    ) -> tuple[JoinResult, bool]:
        """Join under the sandbox's and the endpoint's locks; (result, whether
        anything changed: not for a repeat). `new`: the endpoint's record is
        not written yet (Connect): its first write is the join intent."""
        net = self._ready_network(ep.network_id)
        driver = self.driver_of(net)
        option_keys.check_join(net.spec.driver, options or {})
        att = ep.attachment
        if att is not None:
            if att.sandbox_id != sb.id:
                raise FailedPrecondition(
                    f"endpoint {ep.id!r} is already joined to sandbox {att.sandbox_id!r}",
                    reason="ENDPOINT_JOINED",
                )
            if att.state == JOINED:
                return self._result(ep, att), False
            # A join or leave stopped half-way: finish undoing it, then join afresh.
            ep = self.detach(net, ep, att, sb)
        if not self.sandboxes.alive(sb):
            raise NotFound(
                f"the network namespace of sandbox {sb.id!r} ({sb.key}) is gone",
                reason="NETNS_NOT_FOUND",
                metadata={"sandbox_id": sb.id},
            )
        attachment_plan.check_host_mode(net, sb)
        if sb.spec.external_key and not sb.spec.runtime_moves_interfaces:
            self.sandboxes.keys.check(sb.key)  # a /proc/PID may name another process now
        att = dataclasses.replace(
            attachment_plan.plan(self.state, driver, net, ep, sb), options=dict(options or {})
        )
        intent = dataclasses.replace(ep, attachment=att)
        if new:
            self._record_new_endpoint(ep, intent)
        else:
            with self.locks.network(net.id):
                self._ready_network(net.id)
                self.state.put_endpoint(intent)
        try:
            att = driver.join(net, ep, sb, att)
        except BaseException:
            self._forget_attachment_quietly(ep)
            raise
        att = dataclasses.replace(att, state=JOINED)
        ep = dataclasses.replace(ep, attachment=att)
        self.state.put_endpoint(ep)
        return self._result(ep, att), True

    def connect(
        self, spec: EndpointSpec, sandbox_id: str, options: Mapping[str, str] | None = None
    ) -> JoinResult:
        """CreateEndpoint then Join in one call. A new endpoint's record is
        first written with its join intent (one write, not two): a crash
        after it leaves a join to undo, and reconcile's undo leaves a created
        endpoint, exactly as a crash between two calls would (the controller
        deletes it). A Join that fails forgets an endpoint this call created."""
        spec = specs.endpoint_spec(spec)
        specs.object_id("sandbox", sandbox_id)
        self._forgotten.pop(spec.endpoint_id, None)
        created = False
        try:
            with self.locks.sandbox(sandbox_id), self.locks.endpoint(spec.endpoint_id):
                existing, rec = self._plan_endpoint(spec)
                if existing is None:
                    created = True
                    sb = self._ready_sandbox(sandbox_id)
                    result, _ = self._join_locked(rec, sb, options, new=True)
        except BaseException:
            if created:
                self._forget_failed_connect(spec)
            raise
        if existing is not None:
            # A repeat, or an endpoint created by an earlier call: Join alone.
            return self.join(spec.network_id, spec.endpoint_id, sandbox_id, options)
        self._refresh_network(spec.network_id, sandbox_id)
        return result

    def _forget_failed_connect(self, spec: EndpointSpec) -> None:
        """The endpoint a failed Connect created goes again (record and the
        driver's hooks): the controller's rollback then finds nothing."""
        try:
            self.delete_endpoint(spec.network_id, spec.endpoint_id)
            self._remember_forgotten(spec.endpoint_id)
        except CnmError as e:
            log.warning(
                "endpoint %s: not forgotten after a failed join: %s", spec.endpoint_id[:12], e
            )

    def _remember_forgotten(self, endpoint_id: str) -> None:
        self._forgotten[endpoint_id] = None
        while len(self._forgotten) > 4096:  # bounded: the oldest go first
            del self._forgotten[next(iter(self._forgotten))]

    def _forget_attachment_quietly(self, ep: EndpointRecord) -> None:
        try:
            self.state.put_endpoint(dataclasses.replace(ep, attachment=None))
        except CnmError as e:
            log.error("endpoint %s: could not clear its join record: %s", ep.id[:12], e)

    def _result(self, ep: EndpointRecord, att: Attachment) -> JoinResult:
        return JoinResult(
            interface_name=att.ifname,
            gateway=att.gateway if att.default_route else "",
            gateway_ipv6=att.gateway_ipv6 if att.default_route else "",
            static_routes=att.static_routes,
            port_bindings=att.port_bindings,
            mac=ep.mac,
            host_interface_name=att.host_ifname,
        )

    def leave(self, network_id: str, endpoint_id: str, sandbox_id: str) -> None:
        specs.object_id("network", network_id)
        specs.object_id("endpoint", endpoint_id)
        specs.object_id("sandbox", sandbox_id)
        with self.locks.sandbox(sandbox_id), self.locks.endpoint(endpoint_id):
            ep = self.state.endpoint(endpoint_id)
            if ep is None or ep.attachment is None:
                return
            if ep.network_id != network_id:
                raise not_found.no_endpoint(endpoint_id, network_id)
            att = ep.attachment
            if att.sandbox_id != sandbox_id:
                raise FailedPrecondition(
                    f"endpoint {endpoint_id!r} is joined to sandbox {att.sandbox_id!r}, "
                    f"not {sandbox_id!r}",
                    reason="ENDPOINT_JOINED_ELSEWHERE",
                )
            net = self.state.network(network_id)
            sb = self.state.sandbox(sandbox_id)
            if net is not None:
                self.detach(net, ep, att, sb)
            else:
                self.state.put_endpoint(dataclasses.replace(ep, attachment=None))
            # A sandbox being deleted needs no new default route.
            if (
                att.default_route
                and sb is not None
                and sb.state == READY
                and not sb.spec.runtime_moves_interfaces
            ):
                self.hand_over_default_route(sb)
        self._refresh_network(network_id, sandbox_id)

    def detach(
        self,
        net: NetworkRecord,
        ep: EndpointRecord,
        att: Attachment,
        sb: SandboxRecord | None,
    ) -> EndpointRecord:
        """Leave intent, driver teardown, record cleared. Returns the updated record."""
        if att.state != LEAVING:
            self.state.put_endpoint(
                dataclasses.replace(ep, attachment=dataclasses.replace(att, state=LEAVING))
            )
        self.driver_of(net).leave(net, ep, att, sb)
        ep = dataclasses.replace(ep, attachment=None)
        self.state.put_endpoint(ep)
        return ep

    def hand_over_default_route(self, sb: SandboxRecord) -> None:
        """Give the default route to the next endpoint (join order) that offers a gateway."""
        joined = [
            e
            for e in self.state.endpoints_in_sandbox(sb.id)
            if e.attachment is not None and e.attachment.state == JOINED
        ]
        if any(e.attachment.default_route for e in joined):  # type: ignore[union-attr]
            return
        for ep in joined:
            att = ep.attachment
            assert att is not None
            if not (att.gateway or att.gateway_ipv6) or not att.ifname:
                continue
            try:
                for gw in (att.gateway, att.gateway_ipv6):
                    if gw:
                        osl.set_default_route(gw, ifname=att.ifname, netns=sb.key)
            except NotFound:
                log.info("sandbox %s is gone; no default route to hand over", sb.id[:12])
                return
            except CnmError as e:
                log.error("sandbox %s: could not move the default route: %s", sb.id[:12], e)
                return
            new = dataclasses.replace(ep, attachment=dataclasses.replace(att, default_route=True))
            self.state.put_endpoint(new)
            log.info("sandbox %s: default route now via %s", sb.id[:12], att.ifname)
            return

    def _refresh_network(self, network_id: str, sandbox_id: str) -> None:
        """Rewrite the files of `sandbox_id` now (peers' only for legacy hosts files)."""
        self.sandboxes.refresh_network(network_id, sandbox_id)

    # --- sandboxes ------------------------------------------------------------------------

    def create_sandbox(self, spec: SandboxSpec) -> SandboxRecord:
        spec = specs.sandbox_spec(spec)
        if spec.external_key and not spec.runtime_moves_interfaces:
            self.sandboxes.keys.check(spec.external_key)
        with self.locks.sandbox(spec.sandbox_id):
            existing = self.state.sandbox(spec.sandbox_id)
            if existing is not None:
                if existing.state == READY:
                    if existing.spec == spec:
                        return existing
                    raise AlreadyExists(
                        f"sandbox {spec.sandbox_id!r} already exists with different parameters",
                        reason="SANDBOX_EXISTS",
                        metadata={"sandbox_id": spec.sandbox_id},
                    )
                self.remove_sandbox(existing)
            rec = self.sandboxes.plan(spec)
            self.state.put_sandbox(rec)
            try:
                self.sandboxes.build(rec)
            except BaseException:
                try:
                    self.state.drop_sandbox(rec.id)
                except CnmError as e:
                    log.error("sandbox %s: could not drop its record: %s", rec.id[:12], e)
                raise
            rec = self.sandboxes.ready(rec)
            self.state.put_sandbox(rec)
            log.info("sandbox %s created (%s)", rec.id[:12], rec.key)
            return rec

    def delete_sandbox(self, sandbox_id: str) -> None:
        specs.object_id("sandbox", sandbox_id)
        with self.locks.sandbox(sandbox_id):
            rec = self.state.sandbox(sandbox_id)
            if rec is None:
                return
            self.remove_sandbox(rec)
            log.info("sandbox %s deleted", sandbox_id[:12])

    def remove_sandbox(self, rec: SandboxRecord) -> None:
        """Leave every endpoint (best effort, all errors reported), then namespace and files."""
        if rec.state != DELETING:
            rec = dataclasses.replace(rec, state=DELETING)
            self.state.put_sandbox(rec)
        errors: list[Exception] = []
        for ep in self.state.endpoints_in_sandbox(rec.id):
            try:
                self.leave(ep.network_id, ep.id, rec.id)
            except CnmError as e:
                errors.append(e)
        try:
            self.sandboxes.destroy(rec)
        except CnmError as e:
            errors.append(e)
        if errors:
            raise errors[0] if len(errors) == 1 else MultiError(errors)
        self.state.drop_sandbox(rec.id)

    def get_sandbox(self, sandbox_id: str) -> SandboxView:
        specs.object_id("sandbox", sandbox_id)
        rec = self.state.sandbox(sandbox_id)
        if rec is None or rec.state == CREATING:
            raise not_found.no_sandbox(sandbox_id)
        return self.sandboxes.view(rec)
