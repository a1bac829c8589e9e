"""Finishes or rolls back operations whose controller died midway.

Every controller process keeps a liveness key `controller:instance:<id>`
(renewed by its own thread, expiring `instance_ttl` after a kill -9). Records
in a transitional state name their owner; an intent whose owner is gone (or
that its owner handed over by clearing `owner`) is taken over:

  creating -> rolled back (driver state, addresses found by owner, record)
  joining  -> rolled back (driver Leave; endpoint back to ready)
  leaving  -> finished      deleting -> finished

One replica at a time does this: it holds the lease `controller:reconciler`,
renewed while it runs, so replicas do not fight. The lease holder also turns
host heartbeats into HOST_UP / HOST_DOWN events.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from controller_service.context import Context, describe
from controller_service.endpoints import Endpoints
from controller_service.events import EventType
from controller_service.joins import Joins
from controller_service.models import Endpoint, EndpointState, HostState, Sandbox, State
from controller_service.networks import Networks
from controller_service.repository import Record, in_transition
from controller_service.sandboxes import Sandboxes
from services.errors import CnmError
from services.periodic import Periodic

log = logging.getLogger(__name__)

# An intent older than this is taken over even if its owner still looks alive
# (an owner that lost Redis mid-operation could not hand it over).
_ABANDONED_AFTER = 120.0
# Kinds in the order they are handled: endpoints before the sandboxes and
# networks they pin.
_ORDER = {"ep": 0, "sb": 1, "net": 2}


class Reconciler:
    def __init__(
        self,
        ctx: Context,
        networks: Networks,
        endpoints: Endpoints,
        joins: Joins,
        sandboxes: Sandboxes,
    ) -> None:
        self.ctx = ctx
        self.networks = networks
        self.endpoints = endpoints
        self.joins = joins
        self.sandboxes = sandboxes
        self._stop = threading.Event()
        self._loops = [
            Periodic("liveness", self.heartbeat, max(0.1, ctx.cfg.instance_ttl / 4)),
            Periodic("reconciler", self.pass_once, ctx.cfg.reconcile_interval),
        ]
        # member -> monotonic time before which a failed intent is not retried
        self._backoff: dict[str, tuple[float, float]] = {}

    # ------------------------------------------------------------------ threads

    def start(self) -> None:
        try:
            self.heartbeat()
        except CnmError as e:  # Redis down at start: the liveness thread retries
            log.warning("liveness heartbeat failed: %s", e)
        for loop in self._loops:
            loop.start()

    def stop(self) -> None:
        """Stops the threads. The liveness key is left to expire: requests still
        finishing during the server's grace period remain ours until then."""
        self._stop.set()
        for loop in self._loops:
            loop.stop()
        try:
            # Handing the lease on at once lets a replica take over without
            # waiting for it to expire.
            self.ctx.repo.release_lease(self.ctx.instance)
        except CnmError as e:
            log.debug("could not release the reconciler lease: %s", e)

    def heartbeat(self) -> None:
        me = f"{socket.gethostname()}:{os.getpid()}"
        self.ctx.repo.mark_alive(self.ctx.instance, me, self.ctx.cfg.instance_ttl)

    def pass_once(self) -> None:
        if self.acquire_lease():
            self.track_hosts()
            self.run_once()

    # ------------------------------------------------------------------ lease

    def acquire_lease(self) -> bool:
        ttl = max(3 * self.ctx.cfg.reconcile_interval, self.ctx.cfg.instance_ttl)
        return self.ctx.repo.acquire_lease(self.ctx.instance, ttl)

    def holds_lease(self) -> bool:
        return self.ctx.repo.lease_holder() == self.ctx.instance

    def owner_alive(self, owner: str) -> bool:
        if not owner:
            return False
        if owner == self.ctx.instance:
            return True
        return self.ctx.repo.is_alive(owner)

    # ------------------------------------------------------------------ intents

    def expedite(self, member: str) -> None:
        """A caller waits on intent `member` ("kind:id"): its next pass tries it
        again without the back-off earned by failures (e.g. while Redis was away)."""
        self._backoff.pop(member, None)

    def run_once(self) -> int:
        """One pass over every open intent; returns how many were settled."""
        settled = 0
        intents = sorted(self.ctx.repo.intents(), key=lambda ki: _ORDER.get(ki[0], 9))
        for kind, obj_id in intents:
            if self._stop.is_set():
                break
            member = f"{kind}:{obj_id}"
            not_before, _delay = self._backoff.get(member, (0.0, 0.0))
            if time.monotonic() < not_before:
                continue
            record = self.ctx.repo.record(kind, obj_id)
            if record is None or not in_transition(record):
                self.ctx.repo.drop_intent(kind, obj_id)
                self.ctx.repo.inflight.forget(member)
                continue
            stale = self.ctx.now() - record.op_since > _ABANDONED_AFTER
            # Ours, but the request that wrote it has ended (Redis failed mid-way).
            left = record.owner == self.ctx.instance and self.ctx.repo.inflight.left(member)
            if self.owner_alive(record.owner) and not stale and not left:
                continue
            try:
                with self.ctx.repo.inflight.operation():
                    self._take_over(record)
                settled += 1
                self._backoff.pop(member, None)
                self.ctx.repo.inflight.forget(member)
            except CnmError as e:
                delay = min(30.0, max(self.ctx.cfg.reconcile_interval, _delay * 2))
                self._backoff[member] = (time.monotonic() + delay, delay)
                log.warning("reconciler: %s not settled yet (%s); retry in %.0fs", member, e, delay)
        return settled

    def _take_over(self, record: Record) -> None:
        claimed = self.ctx.transition(record, owner=self.ctx.instance)
        log.info(
            "reconciler: taking over %s (%s, owner %s)",
            describe(claimed),
            claimed.state.value,
            record.owner or "none",
        )
        if isinstance(claimed, Endpoint):
            actions = {
                EndpointState.CREATING: self.endpoints.rollback_create,
                EndpointState.JOINING: self.joins.rollback_join,
                EndpointState.LEAVING: self.joins.finish_leave,
                EndpointState.DELETING: lambda ep: self.endpoints.finish_delete(ep, thorough=True),
            }
            actions[claimed.state](claimed)
        elif isinstance(claimed, Sandbox):
            if claimed.state is State.CREATING:
                self.sandboxes.rollback_create(claimed)
            else:
                self.sandboxes.finish_delete(claimed)
        elif claimed.state is State.CREATING:
            self.networks.rollback_create(claimed)
        else:
            self.networks.finish_delete(claimed, thorough=True)

    # ------------------------------------------------------------------ hosts

    def track_hosts(self) -> None:
        """HOST_UP / HOST_DOWN when a host's state differs from the last one seen."""
        known = self.ctx.repo.host_states()
        for host in self.ctx.hosts.all():
            state = host.state.value
            if known.get(host.id) == state:
                continue
            up = host.state is HostState.READY
            self.ctx.repo.record_host_state(
                host.id,
                state,
                EventType.HOST_UP if up else EventType.HOST_DOWN,
                {"address": host.address, "state": state},
            )
            log.info("host %s is %s", host.id, state)
