"""What every orchestration module shares: store, clients, this instance's
identity, name resolution and the small atomic state transitions."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from controller_service.config import ControllerConfig
from controller_service.drivers_client import DriverClient, DriverClients
from controller_service.hosts import HostRecords, Hosts
from controller_service.ipam_client import IpamClient
from controller_service.models import Endpoint, Host, Network, Sandbox, Scope
from controller_service.repository import Read, Record, Repository, Tx, kind_of
from controller_service.resolve import resolve, resolve_id
from services.errors import Aborted, CnmError, NotFound
from services.ids import is_full_id

log = logging.getLogger(__name__)
R = TypeVar("R", bound=Network | Endpoint | Sandbox)

_KIND_NAMES = {"net": "network", "ep": "endpoint", "sb": "sandbox"}


def describe(obj: Record) -> str:
    """`network "name"` / `endpoint "name" (id)`: how messages name an object."""
    return f"{_KIND_NAMES[kind_of(obj)]} {obj.name!r}"


@dataclass
class Context:
    cfg: ControllerConfig
    repo: Repository
    hosts: Hosts
    drivers: DriverClients
    ipam: IpamClient
    # This controller process; owns the intents it writes.
    instance: str
    clock: Callable[[], float] = time.time

    def now(self) -> float:
        return self.clock()

    def intent(self) -> dict[str, Any]:
        """Fields marking a record as being worked on by this instance."""
        return {"owner": self.instance, "op_since": self.now()}

    @staticmethod
    def settled() -> dict[str, Any]:
        return {"owner": "", "op_since": 0.0}

    # -- resolution
    def network(self, text: str) -> Network:
        repo = self.repo
        if is_full_id(text) and (found := repo.network(text)) is not None:
            return found  # a full id (what runtimes pass): one read, not EXISTS then GET
        if text and (found := repo.record_by_name("net", text)) is not None:
            return found  # a name: one read, not GET the id then GET the record
        net_id = resolve(
            "network",
            text,
            exists=lambda i: repo.exists("net", i),
            by_name=repo.network_id_by_name,
            by_prefix=lambda p: repo.ids_with_prefix("net", p),
        )
        return self._must(repo.network(net_id), "network", text)

    def endpoint(self, text: str) -> Endpoint:
        repo = self.repo
        if is_full_id(text) and (found := repo.endpoint(text)) is not None:
            return found  # a full id (what runtimes pass): one read, not EXISTS then GET
        ep_id = resolve_id(
            "endpoint",
            text,
            exists=lambda i: repo.exists("ep", i),
            by_prefix=lambda p: repo.ids_with_prefix("ep", p),
        )
        return self._must(repo.endpoint(ep_id), "endpoint", text)

    def sandbox(self, text: str) -> Sandbox:
        repo = self.repo
        if is_full_id(text) and (found := repo.sandbox(text)) is not None:
            return found  # a full id (what runtimes pass): one read, not EXISTS then GET
        if text and (found := repo.record_by_name("sb", text)) is not None:
            return found  # a name: one read, not GET the id then GET the record
        sb_id = resolve(
            "sandbox",
            text,
            exists=lambda i: repo.exists("sb", i),
            by_name=repo.sandbox_id_by_name,
            by_prefix=lambda p: repo.ids_with_prefix("sb", p),
        )
        return self._must(repo.sandbox(sb_id), "sandbox", text)

    @staticmethod
    def _must(obj: R | None, kind: str, text: str) -> R:
        # Deleted between resolution and read.
        if obj is None:
            raise NotFound(f"no such {kind} {text!r}", reason=f"{kind.upper()}_NOT_FOUND")
        return obj

    # -- hosts
    def probe(self, host: Host) -> Host:
        """The host, once its driver service answered (UNAVAILABLE otherwise)."""
        self.drivers.for_host(host).probe()
        return host

    def reachable(self, host_id: str) -> Host:
        """A READY host whose driver service answers: checked before an
        operation changes anything, so an unreachable host changes nothing."""
        return self.probe(self.hosts.ready(host_id))

    def reachable_later(
        self, host_id: str, records: HostRecords | None = None
    ) -> Callable[[], Host]:
        """reachable(), concluded by calling the result: the host is judged
        READY now, its driver's health probe is made by that call (just
        before the caller's first write, after its own reads and checks).
        Errors (a host not READY, a probe that fails) are raised by that
        call, so the caller's own checks keep their order. The probe is made
        once, however often the result is called (a transaction retried).
        `records`: the hosts' records as the caller just read them."""
        try:
            host = self.hosts.ready(host_id, records)
            client = self.drivers.for_host(host)
        except CnmError as e:
            failure = e

            def fail() -> Host:
                raise failure

            return fail

        probed: list[bool] = []

        def verdict() -> Host:
            if not probed:
                client.probe()
                probed.append(True)
            return host

        return verdict

    def driver(self, host_id: str) -> DriverClient:
        """The driver service of a READY host (UNAVAILABLE otherwise)."""
        return self.drivers.for_host(self.hosts.ready(host_id))

    def driver_any_state(self, host_id: str) -> DriverClient:
        """The driver service of a host however its heartbeat looks (for
        teardown retried by the reconciler: the call itself decides)."""
        return self.drivers.for_host(self.hosts.get(host_id))

    def address_space(self, scope: Scope) -> str:
        local, global_ = self.ipam.default_spaces()
        return global_ if scope is Scope.GLOBAL else local

    # -- atomic transitions
    def transition(
        self,
        obj: R,
        extra: Callable[[Tx, R], None] | None = None,
        *,
        check: Callable[[Tx, R], None] | None = None,
        reads: tuple[Read, ...] = (),
        **changes: Any,
    ) -> R:
        """Applies `changes` to the stored record if nobody changed its state or
        owner since `obj` was read. `check(tx, current)` reads (and watches)
        whatever else must hold and raises if it does not; `reads`: what it
        will read, read with the record (Tx.prefetch); `extra(tx, new)`
        queues related writes. ABORTED (retry) when the record moved on,
        NOT_FOUND when it is gone.
        """
        kind = kind_of(obj)

        def fn(tx: Tx) -> R:
            tx.prefetch((Read.record(kind, obj.id), *reads))
            current = tx.record(kind, obj.id)
            if current is None:
                raise NotFound(f"{describe(obj)} no longer exists")
            if current.state != obj.state or current.owner != obj.owner:
                raise Aborted(
                    f"{describe(obj)} changed concurrently (now {current.state.value}); retry",
                    reason="CONCURRENT_CHANGE",
                )
            if check:
                check(tx, current)
            new = dataclasses.replace(current, **changes)
            tx.begin()
            tx.put(new)
            if extra:
                extra(tx, new)
            return new

        return self.repo.tx(fn)

    def orphan(self, obj: Record) -> None:
        """Hands an unfinished intent of ours to the reconciler (best effort)."""
        kind = kind_of(obj)

        def fn(tx: Tx) -> None:
            current = tx.record(kind, obj.id)
            if current is None or current.owner != self.instance:
                return
            tx.begin()
            tx.put(dataclasses.replace(current, owner=""))

        try:
            self.repo.tx(fn)
            log.warning("%s left for the reconciler to finish", describe(obj))
        except Exception as e:  # noqa: BLE001 - the intent stays ours; it expires with us
            log.warning("could not hand %s to the reconciler: %s", describe(obj), e)
