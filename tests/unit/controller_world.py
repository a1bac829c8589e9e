"""A controller over the in-memory store with fake IPAM and driver clients:
the orchestration (intents, rollback, reconciliation) runs as it does in the
service, in one process, without root, Redis or gRPC. The fakes keep what a
real IPAM and driver would hold, so a test can assert nothing leaked, and
fail on demand (`fail_on`) to drive the rollbacks."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from controller_service.config import ControllerConfig
from controller_service.context import Context
from controller_service.controller import Controller
from controller_service.hosts import Hosts
from controller_service.memory_repository import MemoryRepository
from controller_service.models import (
    Endpoint,
    Host,
    JoinResult,
    Network,
    PoolUsage,
    Sandbox,
    SandboxPaths,
)
from services.errors import AlreadyExists, Exhausted, Unavailable

HOST = "h1"
DRIVERS = [{"name": n, "scope": "local"} for n in ("bridge", "null", "host")]


class Failures:
    """Operation names that raise once called (`fail_on`), for both fakes."""

    def __init__(self) -> None:
        self.armed: dict[str, Exception] = {}

    def check(self, op: str) -> None:
        err = self.armed.get(op)
        if err is not None:
            raise err


class FakeIpam:
    def __init__(self, failures: Failures) -> None:
        self.failures = failures
        # pool id -> (subnet, owner, {address: owner})
        self.pools: dict[str, tuple[str, str, dict[str, str]]] = {}
        self._next = itertools.count(1)
        self.ids: dict[int, str] = {}

    def default_spaces(self) -> tuple[str, str]:
        return "LocalDefault", "GlobalDefault"

    def request_pool(self, *, pool: str, v6: bool, owner: str, **_: Any) -> tuple[str, str]:
        self.failures.check("request_pool")
        n = next(self._next)
        subnet = pool or (f"fd00:{n}::/64" if v6 else f"10.{n}.0.0/24")
        pool_id = f"pool{n}"
        self.pools[pool_id] = (subnet, owner, {})
        return pool_id, subnet

    def release_pool(self, pool_id: str) -> None:
        self.failures.check("release_pool")
        self.pools.pop(pool_id, None)

    def request_address(self, pool_id: str, address: str = "", *, owner: str, **_: Any) -> str:
        self.failures.check("request_address")
        subnet, _owner, used = self.pools[pool_id]
        net = ipaddress.ip_network(subnet)
        if address:
            if address in used:
                raise AlreadyExists(f"address {address} is in use")
            chosen = address
        else:
            free = (str(a) for a in itertools.islice(net.hosts(), 1000) if str(a) not in used)
            chosen = next(free, "")
            if not chosen:
                raise Exhausted(f"pool {subnet} is full")
        used[chosen] = owner
        return f"{chosen}/{net.prefixlen}"

    def release_address(self, pool_id: str, address: str) -> None:
        self.failures.check("release_address")
        if pool_id in self.pools:
            self.pools[pool_id][2].pop(address.split("/")[0], None)

    def usage(self, pool_id: str) -> tuple[int, int]:
        return len(self.pools[pool_id][2]), 100

    def list_pools(self, page_size: int = 0, page_token: str = "") -> tuple[list[PoolUsage], str]:
        return [
            PoolUsage(pool_id=i, address_space="LocalDefault", pool=s, sub_pool="", owner=o,
                      used=len(u), free=100)
            for i, (s, o, u) in self.pools.items()
        ], ""  # fmt: skip

    def pools_owned_by(self, owner: str) -> list[str]:
        return [i for i, (_s, o, _u) in self.pools.items() if o == owner]

    def addresses_owned_by(self, pool_id: str, owner: str) -> list[str]:
        if pool_id not in self.pools:
            return []
        return [a for a, o in self.pools[pool_id][2].items() if o == owner]

    def held_by_endpoints(self) -> dict[str, str]:
        """address -> owner, of every address not a network's gateway or aux."""
        return {
            a: o
            for _s, _o, used in self.pools.values()
            for a, o in used.items()
            if not o.startswith(("gateway:", "aux:"))
        }

    def create_id_range(self, name: str, start: int, end: int) -> None:
        pass

    def get_id(self, name: str, *, owner: str, id_: int | None = None, **_: Any) -> int:
        vni = id_ if id_ is not None else max(self.ids, default=4095) + 1
        self.ids[vni] = owner
        return vni

    def release_id(self, name: str, id_: int) -> None:
        self.ids.pop(id_, None)


class FakeDriver:
    """One host's driver service: what it holds, as sets of ids."""

    def __init__(self, failures: Failures) -> None:
        self.failures = failures
        self.networks: set[str] = set()
        self.endpoints: set[tuple[str, str]] = set()
        self.joined: set[tuple[str, str]] = set()  # (endpoint, sandbox)
        self.sandboxes: set[str] = set()
        self.calls: list[str] = []

    def _call(self, op: str) -> None:
        self.calls.append(op)
        self.failures.check(op)

    def probe(self) -> None:
        self._call("probe")

    def create_network(self, net: Network, space: str) -> None:
        self._call("create_network")
        self.networks.add(net.id)

    def delete_network(self, network_id: str) -> None:
        self._call("delete_network")
        self.networks.discard(network_id)

    def create_endpoint(self, ep: Endpoint) -> str:
        self._call("create_endpoint")
        self.endpoints.add((ep.network_id, ep.id))
        return ep.mac_address or "02:42:ac:11:00:02"

    def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        self._call("delete_endpoint")
        self.endpoints.discard((network_id, endpoint_id))
        # The real DeleteEndpoint leaves a joined endpoint first.
        self.joined = {j for j in self.joined if j[0] != endpoint_id}

    def connect(self, ep: Endpoint, sandbox_id: str, options: Any) -> JoinResult:
        """Join with `create`: the two halves keep their names for fail_on; a
        failing join forgets the endpoint the call created, as the driver does."""
        mac = self.create_endpoint(ep)
        try:
            result = self.join(ep.network_id, ep.id, sandbox_id, options)
        except Exception:  # a driver failure; Crash (the controller dying) passes through
            self.endpoints.discard((ep.network_id, ep.id))
            raise
        return dataclasses.replace(result, mac_address=mac)

    def join(self, network_id: str, endpoint_id: str, sandbox_id: str, options: Any) -> JoinResult:
        self._call("join")
        self.joined.add((endpoint_id, sandbox_id))
        return JoinResult(interface_name="eth0", host_interface_name="veth0", gateway="10.1.0.1")

    def leave(self, network_id: str, endpoint_id: str, sandbox_id: str) -> None:
        self._call("leave")
        self.joined.discard((endpoint_id, sandbox_id))

    def create_sandbox(self, sb: Sandbox) -> SandboxPaths:
        self._call("create_sandbox")
        self.sandboxes.add(sb.id)
        return SandboxPaths(key=f"/run/netns/{sb.id[:12]}")

    def delete_sandbox(self, sandbox_id: str) -> None:
        self._call("delete_sandbox")
        self.sandboxes.discard(sandbox_id)

    def holds_nothing(self) -> bool:
        return not (self.endpoints or self.joined or self.sandboxes)


class FakeDrivers:
    def __init__(self, failures: Failures) -> None:
        self.by_host: dict[str, FakeDriver] = {}
        self.failures = failures
        self.down: set[str] = set()

    def for_host(self, host: Host) -> FakeDriver:
        if host.id in self.down:
            raise Unavailable(f"driver service of host {host.id!r} does not answer")
        return self.by_host.setdefault(host.id, FakeDriver(self.failures))


@dataclasses.dataclass
class World:
    controller: Controller
    repo: MemoryRepository
    ipam: FakeIpam
    drivers: FakeDrivers
    failures: Failures
    clock: list[float]

    @property
    def driver(self) -> FakeDriver:
        return self.drivers.by_host.setdefault(HOST, FakeDriver(self.failures))

    @contextmanager
    def fail_on(self, op: str, err: Exception | None = None) -> Iterator[None]:
        self.failures.armed[op] = err or Unavailable(f"{op} failed (test)")
        try:
            yield
        finally:
            self.failures.armed.pop(op, None)

    def advance(self, seconds: float) -> None:
        self.clock[0] += seconds

    def new_instance(self, instance: str) -> Controller:
        """Another controller replica over the same store and services."""
        return Controller(_context(self.repo, self.ipam, self.drivers, instance))


def _context(
    repo: MemoryRepository, ipam: FakeIpam, drivers: FakeDrivers, instance: str
) -> Context:
    cfg = dataclasses.replace(ControllerConfig(), instance_ttl=5.0, reconcile_interval=1.0)
    return Context(
        cfg=cfg,
        repo=repo,
        hosts=Hosts(repo, cfg.host_ttl),
        drivers=drivers,  # type: ignore[arg-type]
        ipam=ipam,  # type: ignore[arg-type]
        instance=instance,
        clock=repo.clock,
    )


def make_world() -> World:
    clock = [1_000_000.0]
    repo = MemoryRepository(clock=lambda: clock[0])
    repo.add_host(HOST, "unix:///fake", DRIVERS, ttl=1e9)
    failures = Failures()
    ipam, drivers = FakeIpam(failures), FakeDrivers(failures)
    controller = Controller(_context(repo, ipam, drivers, "first"))
    controller.reconciler.heartbeat()
    return World(controller, repo, ipam, drivers, failures, clock)


def leftovers(world: World) -> dict[str, Any]:
    """What a fully rolled-back world still holds (all empty when nothing leaked)."""
    return {
        "endpoints": world.repo.all_endpoints(),
        "intents": world.repo.intents(),
        "addresses": world.ipam.held_by_endpoints(),
        "driver endpoints": world.driver.endpoints,
        "joined": world.driver.joined,
    }
