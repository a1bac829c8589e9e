"""Redis round trips per Connect and Disconnect, counted exactly: the
controller over the real Redis store (a real redis-server), with the unit
tier's fake IPAM and driver clients (they do not touch Redis). A round trip
is one request written to a Redis socket (`send_packed_command`: a pipeline
or a MULTI/EXEC is one), counted after the connections are made."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis.connection

from controller_service.config import ControllerConfig
from controller_service.context import Context
from controller_service.controller import Controller
from controller_service.hosts import Hosts
from controller_service.models import EndpointSpec, NetworkSpec, SandboxSpec
from controller_service.redis_repository import RedisRepository
from services.errors import CnmError, InvalidArgument
from services.store import Store
from unit.controller_world import DRIVERS, HOST, Failures, FakeDrivers, FakeIpam

# The budget: what a change to the store or the orchestration must not exceed.
CONNECT = 5
CONNECT_WITH_REQUEST_ID = CONNECT + 1
DISCONNECT = 6

_prefix = itertools.count()


@contextmanager
def _counted() -> Iterator[list[int]]:
    sent = [0]
    original = redis.connection.AbstractConnection.send_packed_command

    def send(self, command, check_health=True):  # type: ignore[no-untyped-def]
        sent[0] += 1
        return original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        redis.connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


@pytest.fixture
def world(redis_url):
    store = Store(redis_url, f"rt{next(_prefix)}")
    repo = RedisRepository(store)
    # The host as its driver service registers it (Redis' clock, a long ttl).
    now = store.client.time()[0]
    store.client.hset(
        store.key("host", HOST),
        mapping={
            "id": HOST,
            "address": "unix:///fake",
            "drivers": '[{"name": "bridge", "scope": "local"}]',
            "ttl": "1000000",
            "last_heartbeat": str(now),
        },
    )
    store.client.sadd(store.key("hosts"), HOST)
    assert DRIVERS  # the fake drivers answer for every host
    failures = Failures()
    cfg = ControllerConfig()
    ctx = Context(
        cfg=cfg,
        repo=repo,
        hosts=Hosts(repo, cfg.host_ttl),
        drivers=FakeDrivers(failures),  # type: ignore[arg-type]
        ipam=FakeIpam(failures),  # type: ignore[arg-type]
        instance="rt",
    )
    controller = Controller(ctx)
    yield controller, store
    controller.close()
    for key in store.client.scan_iter(store.key("*")):
        store.client.delete(key)
    store.close()


def _round_trips(fn: Callable[[], object]) -> int:
    with _counted() as sent:
        fn()
    return sent[0]


def _connect(controller: Controller, sandbox: str, request_id: str) -> int:
    return _round_trips(
        lambda: controller.connect("n1", sandbox, EndpointSpec(), request_id=request_id)
    )


def test_connect_and_disconnect_round_trips(world, capsys):
    controller, _store = world
    controller.create_network(NetworkSpec(name="n1", host=HOST))
    names = [f"c{i}" for i in range(6)]
    for name in names:
        controller.create_sandbox(SandboxSpec(name=name, host=HOST))
    # The first call of each kind makes the connections and loads the scripts.
    connect = [_connect(controller, name, "") for name in names[:2]][1:]
    connect_rid = [_connect(controller, name, f"r-{name}") for name in names[2:]][1:]
    disconnect = [
        _round_trips(lambda name=name: controller.joins.disconnect("n1", name)) for name in names
    ][1:]
    with capsys.disabled():
        print(
            f"\nRedis round trips: Connect {connect}, with request_id {connect_rid}, "
            f"Disconnect {disconnect}"
        )
    assert max(connect) <= CONNECT
    assert max(connect_rid) <= CONNECT_WITH_REQUEST_ID
    assert max(disconnect) <= DISCONNECT


def test_a_refused_call_leaves_no_request_record(world):
    controller, store = world
    controller.create_network(NetworkSpec(name="n1", host=HOST), request_id="net")
    controller.create_sandbox(SandboxSpec(name="c0", host=HOST), request_id="sb")
    controller.create_sandbox(SandboxSpec(name="c1", host=HOST))
    refused = [
        lambda: controller.create_network(NetworkSpec(name="bad name"), request_id="r1"),
        lambda: controller.create_network(NetworkSpec(name="n1", host=HOST), request_id="r2"),
        lambda: controller.create_sandbox(SandboxSpec(name="c2", host="h9"), request_id="r3"),
        lambda: controller.connect("n1", "no-such", EndpointSpec(), request_id="r4"),
        lambda: controller.create_endpoint("n9", EndpointSpec(), request_id="r5"),
    ]
    controller.connect("n1", "c0", EndpointSpec(), request_id="ep")
    refused.append(lambda: controller.connect("n1", "c0", EndpointSpec(), request_id="r6"))
    # Refused by the driver, after the intent and the address: rolled back.
    failures = controller.ctx.drivers.failures  # type: ignore[attr-defined]
    failures.armed["join"] = InvalidArgument("refused by the driver (test)")
    refused.append(lambda: controller.connect("n1", "c1", EndpointSpec(), request_id="r7"))
    for call in refused:
        with pytest.raises(CnmError):
            call()
    failures.armed.clear()
    kept = sorted(store.client.scan_iter(store.key("req", "*")))
    assert kept == [store.key("req", r) for r in ("ep", "net", "sb")]
    # Each made its object, recorded as done by the commit that settled it.
    assert all('"done": true' in store.client.get(k) for k in kept)
