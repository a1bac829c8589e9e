"""A driver service that stops answering: calls for its host fail with
UNAVAILABLE within the caller's deadline (never a hang) and change nothing;
the host shows UNREACHABLE (HOST_DOWN); back again, it is READY (HOST_UP)."""

from __future__ import annotations

import json
import os
import signal

import grpc
import pytest
import redis
from controller_env import T, snapshot

from cnm.controller.v1 import controller_pb2 as pb
from cnm.events.v1 import events_pb2
from controller_service.hosts import Hosts
from controller_service.redis_repository import RedisRepository
from harness.wait import until
from harness.world import FAST_FAILOVER, single_host
from services.errors import FailedPrecondition, Unavailable
from services.store import Store

# Fast heartbeats so "unreachable" is reached in about two seconds.
FAST = {"CNM_HOST_TTL": "2", "CNM_HEARTBEAT_INTERVAL": "0.5"}


@pytest.fixture
def world(spawn, redis_url, netns_prefix, netns_host):
    with single_host(
        spawn, redis_url, netns_host, netns_prefix, host_env=FAST, tmp_prefix="cnmh",
        controller_env=FAST_FAILOVER,
    ) as w:  # fmt: skip
        try:
            stub = w.stub()
            stub.CreateNetwork(pb.CreateNetworkRequest(name="hn"), timeout=T)
            stub.CreateSandbox(pb.CreateSandboxRequest(name="hs"), timeout=T)
            yield w
        finally:
            proc = w.hosts["h1"].proc  # a frozen driver thaws before the clean-up
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)


def _state(c) -> int:
    return c.GetHost(pb.GetHostRequest(id="h1"), timeout=T).state


def _calls(c):
    """Calls that need host h1's driver service."""
    return [
        lambda t: c.Connect(pb.ConnectRequest(network="hn", sandbox="hs"), timeout=t),
        lambda t: c.CreateSandbox(pb.CreateSandboxRequest(name="hs2", host="h1"), timeout=t),
        lambda t: c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name="hs"), timeout=t),
        lambda t: c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name="hn"), timeout=t),
    ]


def _assert_unavailable_in_time(world, c, deadline: float) -> None:
    for call in _calls(c):
        before = snapshot(world.redis_url)
        with pytest.raises(grpc.RpcError) as err:
            call(deadline)
        # UNAVAILABLE, not DEADLINE_EXCEEDED: refused before the call's deadline.
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
        assert "h1" in err.value.details()
        assert snapshot(world.redis_url) == before


def test_frozen_driver_is_unavailable_within_the_deadline_then_unreachable(world):
    c = world.stub()
    proc = world.hosts["h1"].proc
    os.kill(proc.pid, signal.SIGSTOP)  # accepts connections, answers nothing
    # Still within its TTL: the call reaches the frozen service and must not hang.
    _assert_unavailable_in_time(world, c, deadline=1.5)
    until(lambda: _state(c) == pb.HOST_STATE_UNREACHABLE, "unreachable", timeout=10)
    # Past its TTL: refused at once, naming the host.
    _assert_unavailable_in_time(world, c, deadline=1.5)
    os.kill(proc.pid, signal.SIGCONT)
    until(lambda: _state(c) == pb.HOST_STATE_READY, "ready again", timeout=10)
    ep = c.Connect(pb.ConnectRequest(network="hn", sandbox="hs"), timeout=T)
    assert ep.state == pb.ENDPOINT_STATE_JOINED


def test_stopped_driver_makes_host_unreachable_and_restarted_ready_again(world):
    c = world.stub()
    watch = c.Watch(pb.WatchRequest(since_revision=0), timeout=60)
    world.stop_host("h1")
    _assert_unavailable_in_time(world, c, deadline=3)
    until(lambda: _state(c) == pb.HOST_STATE_UNREACHABLE, "unreachable", timeout=10)
    listed = c.ListHosts(pb.ListHostsRequest(), timeout=T).hosts
    assert [(h.id, h.state) for h in listed] == [("h1", pb.HOST_STATE_UNREACHABLE)]
    # Silent for a moment only (restarting): a sandbox on "the ready host" is
    # UNAVAILABLE, which clients retry, not FAILED_PRECONDITION "no ready host".
    with pytest.raises(grpc.RpcError) as err:
        c.CreateSandbox(pb.CreateSandboxRequest(name="hs3"), timeout=T)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    assert "host 'h1' is unreachable" in err.value.details()

    world.start_host("h1")
    until(lambda: _state(c) == pb.HOST_STATE_READY, "ready again", timeout=10)
    ep = c.Connect(pb.ConnectRequest(network="hn", sandbox="hs"), timeout=T)
    assert ep.state == pb.ENDPOINT_STATE_JOINED

    # The first HOST_UP (when h1 first registered) may or may not fall inside the
    # watch; what must be there is a HOST_DOWN followed by a HOST_UP.
    seen = []
    for event in watch:
        if event.type in (events_pb2.EVENT_TYPE_HOST_UP, events_pb2.EVENT_TYPE_HOST_DOWN):
            assert event.id == "h1"
            seen.append(event.type)
        if events_pb2.EVENT_TYPE_HOST_DOWN in seen and seen[-1] == events_pb2.EVENT_TYPE_HOST_UP:
            watch.cancel()
            break
    down = seen.index(events_pb2.EVENT_TYPE_HOST_DOWN)
    assert seen[down:] == [events_pb2.EVENT_TYPE_HOST_DOWN, events_pb2.EVENT_TYPE_HOST_UP]


def _register(client, host_id: str, silent_for: float, ttl: float, drivers: str = "bridge") -> None:
    now = float(client.time()[0])
    client.hset(
        f"cnm:host:{host_id}",
        mapping={
            "id": host_id,
            "address": f"unix:///nonexistent/{host_id}.sock",
            "drivers": json.dumps([{"name": drivers, "scope": "local"}]),
            "last_heartbeat": repr(now - silent_for),
            "ttl": repr(ttl),
        },
    )
    client.sadd("cnm:hosts", host_id)


@pytest.mark.parametrize(
    ("hosts", "driver", "expected"),
    [
        pytest.param([], "", FailedPrecondition, id="no-host-at-all"),
        pytest.param([("h1", 3.0)], "", Unavailable, id="silent-a-moment-restarting"),
        pytest.param([("h1", 60.0)], "", FailedPrecondition, id="silent-long-gone"),
        pytest.param([("h1", 60.0), ("h2", 2.0)], "", Unavailable, id="one-of-two-restarting"),
        pytest.param([("h1", 3.0)], "overlay", FailedPrecondition, id="restarting-without-driver"),
    ],
)
def test_no_ready_host_is_unavailable_only_while_one_is_restarting(
    redis_url, hosts, driver, expected
):
    """The documented client retry (UNAVAILABLE only) rides out a driver
    restart; a host silent for long (over 6 TTLs) is FAILED_PRECONDITION."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    # Liveness is lenient for one TTL after Redis starts: judged after it.
    until(lambda: int(client.info("server")["uptime_in_seconds"]) >= 2, "redis up", timeout=10)
    for host_id, silent_for in hosts:
        _register(client, host_id, silent_for, ttl=1.0)
    store = Store(redis_url)
    try:
        with pytest.raises(expected) as err:
            Hosts(RedisRepository(store), default_ttl=1.0).choose("", driver)
        if expected is Unavailable:
            assert err.value.reason == "HOST_UNREACHABLE" and "retry" in str(err.value)
        else:
            assert err.value.reason == "NO_READY_HOST"
    finally:
        store.close()
        client.close()
