"""The controller's store, named by what the controller keeps in it: records
(networks, endpoints, sandboxes) with their name and membership indexes,
intents (records in a transitional state, what the reconciler scans), events,
request-id claims, this instance's liveness and the reconciler lease, and the
hosts the driver services register.

Two implementations: `redis_repository.RedisRepository` (what runs: keys,
Lua and WATCH/MULTI transactions, see its docstring) and
`memory_repository.MemoryRepository` (the same contract in one process, for
unit tests of the orchestration).

Every write goes through `tx(fn)`: `fn` reads what it depends on through the
Tx (a concurrent change to any of it before the commit runs `fn` again), then
`begin()`, then queues writes; they commit together or not at all.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from controller_service.inflight import Inflight
from controller_service.models import (
    Endpoint,
    EndpointState,
    Event,
    Network,
    Sandbox,
    State,
)
from services.errors import InvalidArgument
from services.ids import is_full_id
from services.liveness import StoreClock

T = TypeVar("T")
Record = Network | Endpoint | Sandbox

_KIND: dict[type, str] = {Network: "net", Endpoint: "ep", Sandbox: "sb"}
CLASSES: dict[str, type] = {"net": Network, "ep": Endpoint, "sb": Sandbox}
_SETTLED = {State.READY, EndpointState.READY, EndpointState.JOINED}

# Longest request_id accepted (it is part of a key).
MAX_REQUEST_ID = 256


def kind_of(obj: Record) -> str:
    return _KIND[type(obj)]


def member_of(obj: Record) -> str:
    """`kind:id`: how intents name a record."""
    return f"{kind_of(obj)}:{obj.id}"


def in_transition(obj: Record) -> bool:
    return obj.state not in _SETTLED


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument(
            f"request_id longer than {MAX_REQUEST_ID} characters", reason="INVALID_REQUEST_ID"
        )


@dataclass(frozen=True)
class Read:
    """A read a transaction will make, announced by `Tx.prefetch` so that the
    store makes them together (Redis: WATCH and every read in one round trip)."""

    what: str  # the Tx method that makes it
    args: tuple[str, ...]

    @classmethod
    def record(cls, kind: str, obj_id: str) -> Read:
        return cls("record", (kind, obj_id))

    @classmethod
    def endpoint_name(cls, network_id: str, name: str) -> Read:
        return cls("endpoint_id_by_name", (network_id, name))

    @classmethod
    def sandbox_endpoints(cls, sandbox_id: str) -> Read:
        return cls("sandbox_endpoints", (sandbox_id,))


@dataclass
class Claim:
    """A request claim whose object this thread's call is making
    (Controller._once). The transaction that settles that object marks the
    claim done in the same commit (`done` is set once it committed)."""

    request_id: str
    kind: str
    obj_id: str
    by: str
    done: bool = False

    def value(self, *, done: bool) -> str:
        """The claim as stored (JSON)."""
        fields: dict[str, Any] = {"kind": self.kind, "id": self.obj_id, "by": self.by}
        if done:
            fields["done"] = True
        return json.dumps(fields)


_MAKING: ContextVar[Claim | None] = ContextVar("cnm_request_claim", default=None)


@contextmanager
def making(claim: Claim) -> Iterator[Claim]:
    """`claim` is what this thread's transactions may complete meanwhile."""
    token = _MAKING.set(claim)
    try:
        yield claim
    finally:
        _MAKING.reset(token)


def claim_settled_by(obj: Record) -> Claim | None:
    """The claim a write of `obj` completes: `obj` is the claimed object, settled."""
    claim = _MAKING.get()
    if claim is not None and claim.obj_id == obj.id and not in_transition(obj):
        return claim
    return None


class Tx(abc.ABC):
    """One optimistic transaction: reads (each one watched), `begin()`, then writes."""

    # -- reads, before begin()
    def prefetch(self, reads: Iterable[Read]) -> None:  # noqa: B027 - optional for a store
        """Makes `reads` now, together; the read methods then answer them from
        what was read (still watched). A hint: a read not announced is made
        when asked, and one announced but not asked costs only its reading."""

    @abc.abstractmethod
    def record(self, kind: str, obj_id: str) -> Any:
        """The record of `kind` ("net", "ep", "sb") with `obj_id`, or None."""

    def network(self, obj_id: str) -> Network | None:
        return self.record("net", obj_id)

    def endpoint(self, obj_id: str) -> Endpoint | None:
        return self.record("ep", obj_id)

    def sandbox(self, obj_id: str) -> Sandbox | None:
        return self.record("sb", obj_id)

    @abc.abstractmethod
    def network_id_by_name(self, name: str) -> str | None: ...

    @abc.abstractmethod
    def endpoint_id_by_name(self, network_id: str, name: str) -> str | None: ...

    @abc.abstractmethod
    def sandbox_id_by_name(self, name: str) -> str | None: ...

    @abc.abstractmethod
    def network_endpoint_ids(self, network_id: str) -> set[str]: ...

    @abc.abstractmethod
    def sandbox_endpoints(self, sandbox_id: str) -> dict[str, str]:
        """network id -> endpoint id joined (or joining) to the sandbox."""

    @abc.abstractmethod
    def all_networks(self) -> list[Network]:
        """Every network; a network created or deleted meanwhile retries the transaction."""

    # -- writes, after begin()
    @abc.abstractmethod
    def begin(self) -> None: ...

    @abc.abstractmethod
    def put(self, obj: Record) -> None:
        """Stores `obj` with its name index and intent entry kept in step."""

    @abc.abstractmethod
    def remove(self, obj: Record) -> None:
        """Removes `obj`, its name and its intent entry."""

    @abc.abstractmethod
    def add_network_endpoint(self, network_id: str, endpoint_id: str) -> None: ...

    @abc.abstractmethod
    def remove_network_endpoint(self, network_id: str, endpoint_id: str) -> None: ...

    @abc.abstractmethod
    def attach(self, sandbox_id: str, network_id: str, endpoint_id: str) -> None:
        """Records `endpoint_id` as the sandbox's endpoint on `network_id`."""

    @abc.abstractmethod
    def detach(self, sandbox_id: str, network_id: str) -> None: ...

    @abc.abstractmethod
    def drop_network_indexes(self, network_id: str) -> None:
        """Its endpoint set and the hosts its driver was asked to create it on."""

    @abc.abstractmethod
    def drop_sandbox_endpoints(self, sandbox_id: str) -> None: ...

    @abc.abstractmethod
    def event(
        self,
        type_: str,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """An event committed with the transaction (and only with it)."""


class Repository(abc.ABC):
    def __init__(self) -> None:
        self.inflight = Inflight()

    @abc.abstractmethod
    def tx(self, fn: Callable[[Tx], T]) -> T:
        """Runs `fn` as one transaction (again when what it read changed
        meanwhile; ABORTED after too many lost races). Returns what `fn` returned."""

    # -- records
    @abc.abstractmethod
    def record(self, kind: str, obj_id: str) -> Any: ...

    @abc.abstractmethod
    def records(self, kind: str, ids: Iterable[str]) -> list[Any]:
        """The records of `ids` that exist, in the order of `ids`."""

    @abc.abstractmethod
    def all_records(self, kind: str) -> list[Any]:
        """Every record of `kind`, by id."""

    @abc.abstractmethod
    def ids_with_prefix(self, kind: str, prefix: str, limit: int = 2) -> list[str]:
        """Up to `limit` ids starting with `prefix`, in order."""

    @abc.abstractmethod
    def exists(self, kind: str, obj_id: str) -> bool: ...

    def network(self, obj_id: str) -> Network | None:
        return self.record("net", obj_id)

    def networks(self, ids: Iterable[str]) -> list[Network]:
        return self.records("net", ids)

    def all_networks(self) -> list[Network]:
        return self.all_records("net")

    def endpoint(self, obj_id: str) -> Endpoint | None:
        return self.record("ep", obj_id)

    def endpoints(self, ids: Iterable[str]) -> list[Endpoint]:
        return self.records("ep", ids)

    def all_endpoints(self) -> list[Endpoint]:
        return self.all_records("ep")

    def sandbox(self, obj_id: str) -> Sandbox | None:
        return self.record("sb", obj_id)

    def sandboxes(self, ids: Iterable[str]) -> list[Sandbox]:
        return self.records("sb", ids)

    def all_sandboxes(self) -> list[Sandbox]:
        return self.all_records("sb")

    # -- indexes
    @abc.abstractmethod
    def network_id_by_name(self, name: str) -> str | None: ...

    @abc.abstractmethod
    def endpoint_id_by_name(self, network_id: str, name: str) -> str | None: ...

    @abc.abstractmethod
    def sandbox_id_by_name(self, name: str) -> str | None: ...

    def record_by_name(self, kind: str, name: str) -> Any:
        """The network ("net") or sandbox ("sb") named `name`, or None."""
        by_name = self.network_id_by_name if kind == "net" else self.sandbox_id_by_name
        obj_id = by_name(name)
        return self.record(kind, obj_id) if obj_id else None

    def first_reads(
        self, network: str, sandbox: str
    ) -> tuple[Network | None, Sandbox | None, tuple[dict[str, dict[str, str]], StoreClock]]:
        """What Connect and Disconnect read first, together (one round trip
        where the store can): the network and the sandbox as the caller named
        them, each looked up as a full id or else as a name (None when not
        found that way: the caller resolves it the long way), and
        host_records(). Read-only, unwatched."""
        return self._by_ref("net", network), self._by_ref("sb", sandbox), self.host_records()

    def _by_ref(self, kind: str, text: str) -> Any:
        if not text:
            return None
        if is_full_id(text) and (found := self.record(kind, text)) is not None:
            return found
        return self.record_by_name(kind, text)

    def sandbox_endpoint(self, sandbox_id: str, network_id: str) -> Endpoint | None:
        """The endpoint joined (or joining) the sandbox on the network, or None."""
        ep_id = self.sandbox_endpoints(sandbox_id).get(network_id)
        return self.endpoint(ep_id) if ep_id else None

    @abc.abstractmethod
    def network_endpoint_ids(self, network_id: str) -> set[str]: ...

    @abc.abstractmethod
    def endpoint_counts(self) -> list[tuple[Network, int]]:
        """Every network with its number of endpoints."""

    @abc.abstractmethod
    def sandbox_endpoints(self, sandbox_id: str) -> dict[str, str]:
        """network id -> endpoint id joined (or joining) to the sandbox."""

    # -- where a global-scope network's driver state is
    @abc.abstractmethod
    def network_hosts(self, network_id: str) -> set[str]:
        """Hosts whose driver has (or may have) the network."""

    @abc.abstractmethod
    def network_ready_on(self, network_id: str, host: str) -> bool: ...

    @abc.abstractmethod
    def mark_network_host(self, network_id: str, host: str, *, ready: bool) -> None:
        """`ready=False`: recorded as pending before the driver is asked (unless
        already there), so a delete after a crash reaches the host too."""

    # -- intents
    @abc.abstractmethod
    def intents(self) -> list[tuple[str, str]]:
        """(kind, id) of every record in a transitional state, oldest first."""

    @abc.abstractmethod
    def drop_intent(self, kind: str, obj_id: str) -> None:
        """Forgets a stale intent entry (its record settled or is gone)."""

    # -- request ids
    @abc.abstractmethod
    def claim_request(
        self, request_id: str, kind: str, obj_id: str, ttl: float, by: str
    ) -> dict | None:
        """Records that `request_id` makes `kind` `obj_id`, claimed by controller
        instance `by`. None when claimed now; else what the first request with
        this id recorded ({"kind", "id", "by"}, and "done" once it succeeded).
        """

    @abc.abstractmethod
    def request_done(self, request_id: str, kind: str, obj_id: str, by: str) -> None:
        """Marks the claim as made: a retry finding no object then knows it was
        deleted since, not lost by a first attempt that failed. (Usually done
        already, by the commit that settled the object: see `making`.)"""

    @abc.abstractmethod
    def request_claim(self, request_id: str) -> dict | None: ...

    @abc.abstractmethod
    def forget_request(self, request_id: str) -> None: ...

    # -- events
    @abc.abstractmethod
    def emit(
        self,
        type_: str,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Appends an event on its own (a fact not tied to a record change)."""

    @abc.abstractmethod
    def last_revision(self) -> int: ...

    @abc.abstractmethod
    def read_events(self, after: int, count: int = 256, block_ms: int | None = None) -> list[Event]:
        """Retained events with revision > `after`, oldest first (waiting up to
        `block_ms` for one when there is none)."""

    # -- controller instances
    @abc.abstractmethod
    def mark_alive(self, instance: str, description: str, ttl: float) -> None:
        """This instance is alive for `ttl` seconds more."""

    @abc.abstractmethod
    def is_alive(self, instance: str) -> bool: ...

    @abc.abstractmethod
    def acquire_lease(self, instance: str, ttl: float) -> bool:
        """Takes or renews the reconciler lease for `ttl` s; False when another holds it."""

    @abc.abstractmethod
    def release_lease(self, instance: str) -> None: ...

    @abc.abstractmethod
    def lease_holder(self) -> str | None: ...

    @abc.abstractmethod
    def host_states(self) -> dict[str, str]:
        """host id -> the state last reported by a HOST_UP / HOST_DOWN event."""

    @abc.abstractmethod
    def record_host_state(
        self, host_id: str, state: str, type_: str, attributes: Mapping[str, str]
    ) -> None:
        """Remembers `state` of `host_id` and appends its event, together."""

    # -- hosts, as their driver services register them (read only)
    @abc.abstractmethod
    def host_records(self) -> tuple[dict[str, dict[str, str]], StoreClock]:
        """host id -> its registration fields, and the store's clock read at
        the same moment (heartbeats are judged against it)."""

    @abc.abstractmethod
    def lost_sandboxes(self, host_ids: Iterable[str]) -> set[str]:
        """Sandboxes whose hosts found their network namespace gone."""

    @abc.abstractmethod
    def network_using_vni(self, vni: int) -> str | None:
        """The id of the network some registered host uses VXLAN `vni` for."""
