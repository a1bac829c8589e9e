"""The controller's orchestration against the in-memory store with fake IPAM
and drivers (tests/unit/controller_world.py): what each operation records,
what a failure at each step rolls back, what the reconciler finishes after a
controller died mid-way, and request_id idempotency. The Redis store and the
real services are proven by tests/integration/test_controller*.py."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from controller_world import HOST, World, leftovers, make_world

from controller_service import endpoints, joins, networks, sandboxes
from controller_service.events import EventType
from controller_service.models import EndpointSpec, EndpointState, NetworkSpec, SandboxSpec, State
from controller_service.rollback import Undo
from services.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)


@pytest.fixture
def world() -> World:
    return make_world()


def _connected(world: World, net_name: str = "n1", sb_name: str = "c1") -> tuple[Any, Any, Any]:
    c = world.controller
    net = c.create_network(NetworkSpec(name=net_name))
    sb = c.create_sandbox(SandboxSpec(name=sb_name))
    ep = c.connect(net_name, sb_name, EndpointSpec())
    return net, sb, ep


def _event_types(world: World, after: int = 0) -> list[str]:
    return [e.type for e in world.repo.read_events(after, count=1000)]


class Crash(BaseException):
    """The controller process dies here (kill -9): nothing after it runs."""


class _DyingUndo(Undo):
    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is Crash:
            self.pop_all()  # a dead process rolls nothing back
            return False
        return bool(super().__exit__(exc_type, exc, tb))


@contextlib.contextmanager
def dies_at(world: World, op: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The controller dies when it calls fake `op`; its undo steps never run."""
    for module in (endpoints, joins, networks, sandboxes):
        monkeypatch.setattr(module, "Undo", _DyingUndo)
    with world.fail_on(op, Crash()), pytest.raises(Crash):  # type: ignore[arg-type]
        yield
    for module in (endpoints, joins, networks, sandboxes):
        monkeypatch.setattr(module, "Undo", Undo)


def _after_death(world: World) -> Any:
    """A second controller once the first one's liveness expired."""
    world.advance(world.controller.cfg.instance_ttl + 1)
    second = world.new_instance("second")
    second.reconciler.heartbeat()
    return second


# ------------------------------------------------------------------ the happy path


def test_connect_records_the_endpoint_its_indexes_and_its_events(world):
    net, sb, ep = _connected(world)
    assert ep.state is EndpointState.JOINED and ep.sandbox_id == sb.id
    assert ep.ipv4_address == "10.1.0.2/24"  # the gateway took .1
    assert world.repo.network_endpoint_ids(net.id) == {ep.id}
    assert world.repo.sandbox_endpoints(sb.id) == {net.id: ep.id}
    assert world.repo.endpoint_id_by_name(net.id, "c1") == ep.id
    assert world.repo.intents() == []
    assert world.driver.joined == {(ep.id, sb.id)}
    assert _event_types(world)[-2:] == ["endpoint_created", "endpoint_joined"]


def test_disconnect_removes_what_connect_made(world):
    net, sb, ep = _connected(world)
    rev = world.repo.last_revision()
    world.controller.joins.disconnect("n1", "c1")
    assert leftovers(world) == leftovers(make_world())
    assert world.repo.sandbox_endpoints(sb.id) == {}
    assert world.repo.network_endpoint_ids(net.id) == set()
    assert _event_types(world, rev) == ["endpoint_left", "endpoint_deleted"]


def test_join_then_leave_an_existing_endpoint(world):
    c = world.controller
    net = c.create_network(NetworkSpec(name="n1"))
    sb = c.create_sandbox(SandboxSpec(name="c1"))
    ep = c.create_endpoint("n1", EndpointSpec(name="e1"))
    assert ep.state is EndpointState.READY and world.repo.sandbox_endpoints(sb.id) == {}
    joined = c.joins.join(ep.id, "c1", {})
    assert joined.state is EndpointState.JOINED
    assert world.repo.sandbox_endpoints(sb.id) == {net.id: ep.id}
    assert c.joins.join(ep.id, "c1", {}) == joined  # idempotent for the same pair
    left = c.joins.leave(ep.id, "c1")
    assert left.state is EndpointState.READY and left.sandbox_id == ""
    assert world.repo.sandbox_endpoints(sb.id) == {} and world.driver.joined == set()


def test_a_network_with_endpoints_is_not_deleted(world):
    _connected(world)
    with pytest.raises(FailedPrecondition, match="has active endpoints"):
        world.controller.networks.delete("n1")
    assert world.repo.network_id_by_name("n1")


# ------------------------------------------------------------------ rollback of a failed step


@pytest.mark.parametrize("op", ["request_address", "create_endpoint", "join"])
def test_a_connect_failing_at_a_step_leaves_nothing(world, op):
    c = world.controller
    net = c.create_network(NetworkSpec(name="n1"))
    sb = c.create_sandbox(SandboxSpec(name="c1"))
    rev = world.repo.last_revision()
    with world.fail_on(op), pytest.raises(Unavailable):
        c.connect("n1", "c1", EndpointSpec())
    assert leftovers(world) == leftovers(make_world())
    assert world.repo.sandbox_endpoints(sb.id) == {}
    assert world.repo.network_endpoint_ids(net.id) == set()
    assert _event_types(world, rev) == []  # a rolled-back intent is never announced
    # And the same connect works once the step does.
    assert c.connect("n1", "c1", EndpointSpec()).state is EndpointState.JOINED


def test_a_failed_rollback_hands_the_intent_to_the_reconciler(world):
    c = world.controller
    c.create_network(NetworkSpec(name="n1"))
    c.create_sandbox(SandboxSpec(name="c1"))
    with world.fail_on("join"), world.fail_on("delete_endpoint"), pytest.raises(Unavailable):
        c.connect("n1", "c1", EndpointSpec())
    (ep,) = world.repo.all_endpoints()
    assert ep.state is EndpointState.CREATING and ep.owner == ""  # orphaned, not lost
    assert world.repo.intents() == [("ep", ep.id)]
    assert c.reconciler.acquire_lease() and c.reconciler.run_once() == 1
    assert leftovers(world) == leftovers(make_world())


def test_a_failing_leave_puts_the_endpoint_back_to_joined(world):
    _net, _sb, ep = _connected(world)
    with world.fail_on("leave"), pytest.raises(Unavailable):
        world.controller.joins.leave(ep.id, "c1")
    assert world.repo.endpoint(ep.id).state is EndpointState.JOINED
    assert world.repo.intents() == []


def test_a_network_failing_at_the_driver_releases_its_pools(world):
    with world.fail_on("create_network"), pytest.raises(Unavailable):
        world.controller.create_network(NetworkSpec(name="n1"))
    assert world.repo.all_networks() == [] and world.ipam.pools == {}
    assert world.repo.intents() == []


def test_an_unreachable_host_changes_nothing(world):
    world.controller.create_network(NetworkSpec(name="n1"))
    world.controller.create_sandbox(SandboxSpec(name="c1"))
    world.drivers.down.add(HOST)
    before = (world.repo.all_endpoints(), world.repo.last_revision(), dict(world.ipam.pools))
    with pytest.raises(Unavailable, match="does not answer"):
        world.controller.connect("n1", "c1", EndpointSpec())
    assert (world.repo.all_endpoints(), world.repo.last_revision(), world.ipam.pools) == before


# ------------------------------------------------------------------ a controller dies mid-way


@pytest.mark.parametrize("op", ["join", "create_endpoint"])
def test_a_connect_whose_controller_died_is_rolled_back_by_another(world, op, monkeypatch):
    c = world.controller
    c.create_network(NetworkSpec(name="n1"))
    sb = c.create_sandbox(SandboxSpec(name="c1"))
    with dies_at(world, op, monkeypatch):
        c.connect("n1", "c1", EndpointSpec())
    (ep,) = world.repo.all_endpoints()
    assert ep.state is EndpointState.CREATING and ep.owner == "first"
    # The address was allocated under the endpoint's id but never recorded.
    assert list(world.ipam.held_by_endpoints().values()) == [ep.id] and not ep.ipv4_address
    second = world.new_instance("second")
    assert second.reconciler.acquire_lease()
    assert second.reconciler.run_once() == 0  # its owner still looks alive: left alone
    second = _after_death(world)
    assert second.reconciler.run_once() == 1
    assert leftovers(world) == leftovers(make_world())
    assert world.repo.sandbox_endpoints(sb.id) == {}


def test_a_disconnect_whose_controller_died_is_finished_by_another(world, monkeypatch):
    _net, sb, ep = _connected(world)
    with dies_at(world, "delete_endpoint", monkeypatch):
        world.controller.joins.disconnect("n1", "c1")
    assert world.repo.endpoint(ep.id).state is EndpointState.DELETING
    second = _after_death(world)
    assert second.reconciler.acquire_lease() and second.reconciler.run_once() == 1
    assert leftovers(world) == leftovers(make_world())
    assert world.repo.sandbox_endpoints(sb.id) == {}
    assert _event_types(world)[-2:] == ["endpoint_left", "endpoint_deleted"]


def test_a_sandbox_whose_controller_died_creating_it_is_rolled_back(world, monkeypatch):
    with dies_at(world, "create_sandbox", monkeypatch):
        world.controller.create_sandbox(SandboxSpec(name="c1"))
    (sb,) = world.repo.all_sandboxes()
    assert sb.state is State.CREATING
    second = _after_death(world)
    assert second.reconciler.acquire_lease() and second.reconciler.run_once() == 1
    assert world.repo.all_sandboxes() == [] and world.repo.sandbox_id_by_name("c1") is None
    assert world.repo.intents() == []


def test_an_intent_that_cannot_be_settled_yet_waits_and_is_retried(world, monkeypatch):
    world.controller.create_network(NetworkSpec(name="n1"))
    world.controller.create_sandbox(SandboxSpec(name="c1"))
    with dies_at(world, "join", monkeypatch):
        world.controller.connect("n1", "c1", EndpointSpec())
    second = _after_death(world)
    second.reconciler.acquire_lease()
    with world.fail_on("delete_endpoint"):
        assert second.reconciler.run_once() == 0
    assert world.repo.intents() != []
    second.reconciler._backoff.clear()  # the retry's delay has passed
    assert second.reconciler.run_once() == 1
    assert leftovers(world) == leftovers(make_world())


# ------------------------------------------------------------------ replicas, requests, events


def test_one_reconciler_lease_and_host_events(world):
    a, b = world.controller, world.new_instance("second")
    assert a.reconciler.acquire_lease() and not b.reconciler.acquire_lease()
    a.reconciler.track_hosts()
    a.reconciler.track_hosts()  # a state is announced once
    assert [(e.type, e.id) for e in world.repo.read_events(0)] == [(EventType.HOST_UP, HOST)]
    a.reconciler.stop()
    assert b.reconciler.acquire_lease()


def test_a_request_id_makes_one_object(world):
    c = world.controller
    first = c.create_network(NetworkSpec(name="n1"), request_id="r1")
    assert c.create_network(NetworkSpec(name="n1"), request_id="r1") == first
    with pytest.raises(InvalidArgument, match="already used for a network"):
        c.create_sandbox(SandboxSpec(name="c1"), request_id="r1")
    with pytest.raises(InvalidArgument, match="longer than 256"):
        c.create_network(NetworkSpec(name="n2"), request_id="r" * 257)


def test_a_failed_request_lets_its_retry_act(world):
    c = world.controller
    with world.fail_on("create_sandbox"), pytest.raises(Unavailable):
        c.create_sandbox(SandboxSpec(name="c1"), request_id="r1")
    assert c.create_sandbox(SandboxSpec(name="c1"), request_id="r1").state is State.READY


def test_a_retry_of_a_connect_that_failed_half_way_is_told_to_retry_at_once(world, monkeypatch):
    # Redis went away mid-Connect: neither the rollback's driver step nor the
    # forgetting of the request_id worked, so the claim and a CREATING intent stay.
    c = world.controller
    c.create_network(NetworkSpec(name="n1"))
    c.create_sandbox(SandboxSpec(name="c1"))

    def redis_away(*_: Any) -> None:
        raise Unavailable("redis is away")

    with monkeypatch.context() as m:
        m.setattr(world.repo, "forget_request", redis_away)
        with world.fail_on("join"), world.fail_on("delete_endpoint"), pytest.raises(Unavailable):
            c.connect("n1", "c1", EndpointSpec(), request_id="r1")
    (ep,) = world.repo.all_endpoints()
    assert ep.state is EndpointState.CREATING
    # The retry does not wait out its deadline on a first attempt that has ended.
    with pytest.raises(Unavailable, match="failed half-way") as err:
        c.connect("n1", "c1", EndpointSpec(), request_id="r1")
    assert err.value.reason == "REQUEST_IN_PROGRESS"
    # Once the reconciler undid it, the same request connects afresh.
    assert c.reconciler.acquire_lease() and c.reconciler.run_once() == 1
    done = c.connect("n1", "c1", EndpointSpec(), request_id="r1")
    assert done.state is EndpointState.JOINED and done.id != ep.id
    assert c.connect("n1", "c1", EndpointSpec(), request_id="r1") == done


def test_a_transition_refuses_a_record_that_moved_on(world):
    net = world.controller.create_network(NetworkSpec(name="n1"))
    ctx = world.controller.ctx
    ctx.transition(net, state=State.DELETING, **ctx.intent())
    with pytest.raises(Aborted, match="changed concurrently"):
        ctx.transition(net, state=State.DELETING)  # `net` is the stale view
    assert world.repo.intents() == [("net", net.id)]


def test_watch_replays_from_a_revision(world):
    _connected(world)
    follow = world.controller.events.follow(2, lambda: True)
    started = next(follow)
    assert started.type == EventType.WATCH_STARTED and started.attributes["replay_after"] == "2"
    assert next(follow).revision == 3


def test_a_missing_network_is_named_as_the_user_named_it(world):
    world.controller.create_sandbox(SandboxSpec(name="c1"))
    with pytest.raises(NotFound, match="no such network 'nope'"):
        world.controller.connect("nope", "c1", EndpointSpec())
