"""Sandboxes: create on a host (the driver makes the namespace and files),
get with endpoints, list, delete (leaving every endpoint first)."""

from __future__ import annotations

import builtins
import dataclasses
import logging
import time

from controller_service import listing, validate
from controller_service.context import Context, describe
from controller_service.endpoints import Endpoints
from controller_service.events import EventType
from controller_service.joins import Joins
from controller_service.models import Endpoint, EndpointState, Page, Sandbox, SandboxSpec, State
from controller_service.repository import Tx
from controller_service.rollback import Undo, crash_point
from services.errors import AlreadyExists, CnmError, FailedPrecondition, MultiError
from services.values.dns import is_hostname

log = logging.getLogger(__name__)

_IN_FLIGHT = (EndpointState.CREATING, EndpointState.JOINING, EndpointState.LEAVING)
# How often a delete looks again at endpoints still being joined or left.
_SETTLE_POLL = 0.05


def _attrs(sb: Sandbox) -> dict[str, str]:
    return {"host": sb.host, "container_id": sb.container_id}


def default_name(spec: SandboxSpec, sb_id: str) -> str:
    """The container id's short form when it makes a valid name, else the id's."""
    short = spec.container_id[:12]
    if short and is_hostname(short) and "." not in short:
        return short
    return sb_id[:12]


class Sandboxes:
    def __init__(self, ctx: Context, endpoints: Endpoints, joins: Joins) -> None:
        self.ctx = ctx
        self.endpoints = endpoints
        self.joins = joins

    # ------------------------------------------------------------------ create

    def create(self, spec: SandboxSpec, sb_id: str) -> Sandbox:
        ctx = self.ctx
        spec = validate.sandbox_spec(spec)
        host = ctx.probe(ctx.hosts.choose(spec.host))
        sb = Sandbox(
            id=sb_id,
            name=spec.name or default_name(spec, sb_id),
            host=host.id,
            container_id=spec.container_id,
            hostname=spec.hostname,
            domainname=spec.domainname,
            dns=spec.dns,
            extra_hosts=spec.extra_hosts,
            external_key=spec.external_key,
            runtime_moves_interfaces=spec.runtime_moves_interfaces,
            host_network=spec.host_network,
            labels=spec.labels,
            created=ctx.now(),
            state=State.CREATING,
            **ctx.intent(),
        )
        with Undo() as undo:
            sb = self._write_intent(sb)
            undo.step("forget sandbox", self._forget_or_orphan, sb, undo)
            driver = ctx.drivers.for_host(host)
            undo.step("driver DeleteSandbox", driver.delete_sandbox, sb.id)
            paths = driver.create_sandbox(sb)
            crash_point("sandbox_after_driver")
            sb = ctx.transition(
                sb,
                lambda tx, new: tx.event(EventType.SANDBOX_CREATED, new.id, new.name, _attrs(new)),
                state=State.READY,
                key=paths.key,
                hosts_path=paths.hosts_path,
                resolv_conf_path=paths.resolv_conf_path,
                **ctx.settled(),
            )
            undo.commit()
        log.info("created sandbox %s (%s) on host %s", sb.name, sb.id, sb.host)
        return sb

    def _write_intent(self, sb: Sandbox) -> Sandbox:
        def fn(tx: Tx) -> Sandbox:
            taken = tx.sandbox_id_by_name(sb.name)
            if taken:
                raise AlreadyExists(
                    f"sandbox name {sb.name!r} is already taken (by {taken})",
                    reason="SANDBOX_NAME_TAKEN",
                )
            tx.begin()
            tx.put(sb)
            return sb

        return self.ctx.repo.tx(fn)

    def _forget_or_orphan(self, sb: Sandbox, undo: Undo) -> None:
        if undo.failures:
            self.ctx.orphan(sb)
        else:
            self._remove(sb, event=False)

    # ------------------------------------------------------------------ read

    def get(self, text: str) -> tuple[Sandbox, list[Endpoint]]:
        sb = self._mark_lost([self.ctx.sandbox(text)])[0]
        return sb, self.joined_endpoints(sb)

    def _mark_lost(self, sbs: list[Sandbox]) -> list[Sandbox]:
        lost = self.ctx.hosts.lost_sandboxes([s.host for s in sbs])
        return [dataclasses.replace(s, lost=True) if s.id in lost else s for s in sbs]

    def joined_endpoints(self, sb: Sandbox) -> list[Endpoint]:
        eps = self.ctx.repo.endpoints(self.ctx.repo.sandbox_endpoints(sb.id).values())
        return sorted(
            (e for e in eps if e.sandbox_id == sb.id and e.state is not EndpointState.JOINING),
            key=lambda e: (e.network_name, e.id),
        )

    def list(self, host: str, page_size: int, token: str) -> Page[Sandbox]:
        sbs = [s for s in self.ctx.repo.all_sandboxes() if not host or s.host == host]
        page = listing.paginate(sbs, lambda s: f"{s.name}\x00{s.id}", page_size, token)
        return dataclasses.replace(page, items=tuple(self._mark_lost(list(page.items))))

    # ------------------------------------------------------------------ delete

    def delete(self, text: str, *, purge_endpoints: bool = False) -> builtins.list[str]:
        """Leaves every endpoint (deleting those Connect made, or all with
        `purge_endpoints`), then removes the sandbox. Returns deleted endpoint ids."""
        return self.delete_sandbox(self.ctx.sandbox(text), purge_endpoints=purge_endpoints)

    def delete_sandbox(self, sb: Sandbox, *, purge_endpoints: bool = False) -> builtins.list[str]:
        ctx = self.ctx
        if sb.state is State.CREATING:
            raise FailedPrecondition(f"{describe(sb)} is still being created", reason="IN_PROGRESS")
        ctx.reachable(sb.host)  # UNAVAILABLE before anything changes
        sb = ctx.transition(
            sb,
            state=State.DELETING,
            purge_endpoints=purge_endpoints or sb.purge_endpoints,
            **ctx.intent(),
        )
        removed = self.finish_delete(sb)
        log.info("deleted sandbox %s (%s)", sb.name, sb.id)
        return removed

    def finish_delete(self, sb: Sandbox) -> builtins.list[str]:
        """Endpoints left (or deleted), the driver's sandbox gone, record gone.
        Best effort: goes on after a failure, then raises them all, leaving
        the intent to the reconciler."""
        ctx = self.ctx
        errors: builtins.list[Exception] = []
        removed: builtins.list[str] = []
        for ep in self._settled_endpoints(sb, errors):
            try:
                if ep.implicit or sb.purge_endpoints:
                    self.endpoints.delete_endpoint(ep)
                    removed.append(ep.id)
                elif ep.state is EndpointState.JOINED:
                    self.joins.leave_endpoint(ep)
            except CnmError as e:
                errors.append(e)
        if not errors:
            try:
                ctx.driver_any_state(sb.host).delete_sandbox(sb.id)
            except CnmError as e:
                errors.append(e)
        if errors:
            ctx.orphan(sb)
            raise errors[0] if len(errors) == 1 else MultiError(errors)
        self._remove(sb, event=sb.state is State.DELETING)
        return removed

    def rollback_create(self, sb: Sandbox) -> None:
        self.finish_delete(sb)

    def _settled_endpoints(
        self, sb: Sandbox, errors: builtins.list[Exception]
    ) -> builtins.list[Endpoint]:
        """The sandbox's endpoints once none is mid-join/leave (those finish or
        roll back on their own; the join's commit sees the sandbox deleting)."""
        deadline = time.monotonic() + self.ctx.cfg.driver_timeout + 1
        while True:
            eps = [
                e
                for e in self.ctx.repo.endpoints(self.ctx.repo.sandbox_endpoints(sb.id).values())
                if e.sandbox_id == sb.id
            ]
            busy = [e for e in eps if e.state in _IN_FLIGHT]
            if not busy:
                return eps
            if time.monotonic() > deadline:
                errors.append(
                    FailedPrecondition(
                        f"{describe(sb)}: endpoints still in flight: "
                        + ", ".join(f"{e.name} ({e.state.value})" for e in busy),
                        reason="ENDPOINT_BUSY",
                    )
                )
                return [e for e in eps if e not in busy]
            time.sleep(_SETTLE_POLL)

    def _remove(self, sb: Sandbox, *, event: bool) -> None:
        def fn(tx: Tx) -> None:
            current = tx.sandbox(sb.id)
            if current is None:
                return
            tx.begin()
            tx.remove(current)
            tx.drop_sandbox_endpoints(sb.id)
            if event:
                tx.event(EventType.SANDBOX_DELETED, sb.id, sb.name, _attrs(sb))

        self.ctx.repo.tx(fn)
