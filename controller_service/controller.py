"""The controller: composes networks, endpoints, joins, sandboxes, hosts,
events, GC and the reconciler over one Context (the servicer calls those
modules directly), and makes creates idempotent per request_id (the store's
request claims: request_id -> the object the first request made).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from controller_service import deadline, listing
from controller_service.config import ControllerConfig
from controller_service.context import Context
from controller_service.drivers_client import DriverClients
from controller_service.endpoints import Endpoints
from controller_service.events import EventLog
from controller_service.gc import garbage_collect
from controller_service.hosts import Hosts
from controller_service.ipam_client import IpamClient
from controller_service.joins import Joins
from controller_service.models import (
    Endpoint,
    EndpointSpec,
    EndpointState,
    GcResult,
    Network,
    NetworkSpec,
    Page,
    PoolUsage,
    Sandbox,
    SandboxSpec,
    State,
)
from controller_service.networks import Networks
from controller_service.reconciler import Reconciler
from controller_service.redis_repository import RedisRepository
from controller_service.repository import Claim, making, member_of
from controller_service.sandboxes import Sandboxes
from services.errors import InvalidArgument, NotFound, Unavailable
from services.ids import new_id
from services.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T", Network, Endpoint, Sandbox)

# How often a retried request looks whether the first one has finished.
_DEDUP_POLL = 0.05


def redis_context(cfg: ControllerConfig, store: Store, instance: str | None = None) -> Context:
    """What runs: the Redis store, gRPC clients of IPAM and the driver services."""
    tls = cfg.client_tls()
    repo = RedisRepository(store, cfg.events_retained)
    return Context(
        cfg=cfg,
        repo=repo,
        hosts=Hosts(repo, cfg.host_ttl),
        drivers=DriverClients(cfg.driver_timeout, **tls),
        ipam=IpamClient(cfg.ipam, cfg.driver_timeout, **tls),
        instance=instance or new_id()[:16],
    )


class Controller:
    def __init__(self, ctx: Context) -> None:
        self.cfg = ctx.cfg
        self.ctx = ctx
        self.events = EventLog(ctx.repo)
        self.networks = Networks(self.ctx)
        self.endpoints = Endpoints(self.ctx, self.networks)
        self.joins = Joins(self.ctx, self.networks, self.endpoints)
        self.sandboxes = Sandboxes(self.ctx, self.endpoints, self.joins)
        self.reconciler = Reconciler(
            self.ctx, self.networks, self.endpoints, self.joins, self.sandboxes
        )
        # request_ids whose first attempt runs in this process now.
        self._running: set[str] = set()
        self._running_lock = threading.Lock()

    def close(self) -> None:
        """Stops the background threads. Channels are left open: requests in
        the server's grace period may still use them (closing a channel under
        a live call can crash grpc); the process exit closes them."""
        self.reconciler.stop()

    # ------------------------------------------------------------------ request_id

    def _once(
        self,
        request_id: str,
        kind: str,
        make: Callable[[str], T],
        fetch: Callable[[str], T | None],
    ) -> T:
        """`make(new id)`, or for a repeated request_id, what the first request made."""
        obj_id = new_id()
        if not request_id:
            return make(obj_id)
        repo, me = self.ctx.repo, self.ctx.instance
        prior = repo.claim_request(request_id, kind, obj_id, self.cfg.request_ttl, me)
        if prior is None:
            with self._running_lock:
                self._running.add(request_id)
            claim = Claim(request_id, kind, obj_id, me)
            try:
                with making(claim):
                    obj = make(obj_id)
            except Exception:
                # Nothing was made: a retry with this request_id may try again.
                # (If Redis is down now, the claim stays; the retry sees that
                # no request of this id runs here any more and takes over.)
                with contextlib.suppress(Unavailable):
                    repo.forget_request(request_id)
                raise
            finally:
                with self._running_lock:
                    self._running.discard(request_id)
            if not claim.done:  # not by the commit that settled the object
                with contextlib.suppress(Unavailable):
                    repo.request_done(request_id, kind, obj_id, me)
            return obj
        if prior.get("kind") != kind:
            raise InvalidArgument(
                f"request_id {request_id!r} was already used for a {prior.get('kind')} request",
                reason="REQUEST_ID_REUSED",
            )
        return self._await_first(request_id, kind, prior["id"], make, fetch)

    def _first_attempt_gone(self, request_id: str, claim: dict) -> bool:
        """The claim's first attempt neither made its object nor runs any more:
        it failed and could not forget its claim (Redis was down), or its
        controller died before writing anything."""
        if claim.get("done"):
            return False
        by = claim.get("by", "")
        if by == self.ctx.instance:
            with self._running_lock:
                return request_id not in self._running
        return bool(by) and not self.reconciler.owner_alive(by)

    def _await_first(
        self,
        request_id: str,
        kind: str,
        obj_id: str,
        make: Callable[[str], T],
        fetch: Callable[[str], T | None],
    ) -> T:
        # The first request may still be running: wait for its outcome, within
        # the caller's deadline (a retry that outlives it is retried again).
        until = time.monotonic() + deadline.timeout(3 * self.cfg.driver_timeout)
        while True:
            obj = fetch(obj_id)
            if obj is not None and obj.state not in (State.CREATING, EndpointState.CREATING):
                return obj
            claim = self.ctx.repo.request_claim(request_id)
            if obj is None:
                if claim is None:
                    # The first request failed and let go: this one acts instead.
                    return self._once(request_id, kind, make, fetch)
                if self._first_attempt_gone(request_id, claim):
                    log.info(
                        "request %s: its first attempt failed unrecorded; retrying it", request_id
                    )
                    self.ctx.repo.forget_request(request_id)
                    return self._once(request_id, kind, make, fetch)
                if claim.get("done"):
                    raise NotFound(
                        f"the {kind} made by request {request_id!r} no longer exists",
                        reason="REQUEST_RESULT_GONE",
                    )
            elif claim is not None and self._first_attempt_gone(request_id, claim):
                # It failed half-way and could not undo its intent (Redis was
                # away): the reconciler undoes it, then a retry makes it afresh.
                self.reconciler.expedite(member_of(obj))
                raise Unavailable(
                    f"the first {kind} request {request_id!r} failed half-way and what it "
                    "made is being undone; retry",
                    reason="REQUEST_IN_PROGRESS",
                )
            if time.monotonic() > until:
                # Never a half-made object as the result.
                raise Unavailable(
                    f"the first {kind} request {request_id!r} has not finished; retry",
                    reason="REQUEST_IN_PROGRESS",
                )
            time.sleep(_DEDUP_POLL)

    # ------------------------------------------------------------------ creates, once per request_id

    def create_network(self, spec: NetworkSpec, request_id: str = "") -> Network:
        return self._once(
            request_id,
            "network",
            lambda i: self.networks.create(spec, i),
            self.ctx.repo.network,
        )

    def create_endpoint(self, network: str, spec: EndpointSpec, request_id: str = "") -> Endpoint:
        return self._once(
            request_id,
            "endpoint",
            lambda i: self.endpoints.create(network, spec, i),
            self.ctx.repo.endpoint,
        )

    def create_sandbox(self, spec: SandboxSpec, request_id: str = "") -> Sandbox:
        return self._once(
            request_id,
            "sandbox",
            lambda i: self.sandboxes.create(spec, i),
            self.ctx.repo.sandbox,
        )

    def connect(
        self, network: str, sandbox: str, spec: EndpointSpec, request_id: str = ""
    ) -> Endpoint:
        return self._once(
            request_id,
            "connect",
            lambda i: self.joins.connect(network, sandbox, spec, i),
            self.ctx.repo.endpoint,
        )

    # ------------------------------------------------------------------ what no module owns

    def list_pools(self, page_size: int, token: str) -> Page[PoolUsage]:
        usage, next_token = self.ctx.ipam.list_pools(listing.page_size(page_size), token)
        return Page(items=tuple(usage), next_token=next_token)

    def garbage_collect(self, valid_sandbox_ids: list[str]) -> GcResult:
        return garbage_collect(self.ctx, self.sandboxes, valid_sandbox_ids)
