"""The controller's Redis layer against a real redis-server: name claims and
state transitions are atomic across concurrent writers, event revisions are
strictly increasing and resumable, and only one replica holds the
reconciler lease."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from controller_service.config import ControllerConfig
from controller_service.context import Context
from controller_service.events import EventLog, EventType
from controller_service.models import Network, Scope, State
from controller_service.redis_repository import RedisRepository
from controller_service.repository import Repository, Tx
from services.errors import Aborted, AlreadyExists
from services.store import Store


@pytest.fixture
def store(redis_url):
    s = Store(redis_url, "cnm")
    yield s
    s.close()


def _claim_name(repo: Repository, net: Network) -> bool:
    def fn(tx: Tx) -> None:
        if tx.network_id_by_name(net.name):
            raise AlreadyExists(net.name)
        tx.begin()
        tx.put(net)

    try:
        repo.tx(fn)
        return True
    except AlreadyExists:
        return False


def test_sixteen_writers_claiming_one_name_exactly_one_wins(store):
    repo = RedisRepository(store)
    nets = [
        Network(id=f"{i:064x}", name="same", driver="bridge", scope=Scope.LOCAL) for i in range(16)
    ]
    barrier = threading.Barrier(16)

    def claim(net: Network) -> bool:
        barrier.wait()
        return _claim_name(repo, net)

    with ThreadPoolExecutor(16) as pool:
        won = list(pool.map(claim, nets))
    assert won.count(True) == 1
    winner = nets[won.index(True)]
    assert repo.network_id_by_name("same") == winner.id
    assert [n.id for n in repo.all_networks()] == [winner.id]


def test_transition_refuses_a_record_that_moved_on(store):
    repo = RedisRepository(store)
    ctx = Context(
        cfg=ControllerConfig(), repo=repo, hosts=None, drivers=None, ipam=None, instance="me"
    )
    net = Network(id="a" * 64, name="n", driver="bridge", scope=Scope.LOCAL, owner="me")
    assert _claim_name(repo, net)
    moved = ctx.transition(net, state=State.READY, owner="")
    assert moved.state is State.READY and repo.network(net.id) == moved
    with pytest.raises(Aborted, match="changed concurrently"):
        ctx.transition(net, state=State.DELETING)  # `net` is the stale view
    assert repo.network(net.id) == moved
    assert repo.intents() == []
    deleting = ctx.transition(moved, state=State.DELETING, owner="me", op_since=5.0)
    assert repo.intents() == [("net", net.id)] and deleting.owner == "me"


def test_a_transition_is_two_round_trips_and_a_concurrent_write_retries_it(store):
    """WATCH and the read go together (one round trip), MULTI..EXEC the other;
    a write to a key read in between makes the transaction run again."""
    from prometheus_client import REGISTRY

    repo = RedisRepository(store)
    ctx = Context(
        cfg=ControllerConfig(), repo=repo, hosts=None, drivers=None, ipam=None, instance="me"
    )
    net = Network(id="b" * 64, name="rt", driver="bridge", scope=Scope.LOCAL)
    sb_id = "c" * 64
    assert _claim_name(repo, net)

    def round_trips() -> float:
        return REGISTRY.get_sample_value("cnm_redis_round_trips_total") or 0.0

    before = round_trips()
    ctx.transition(net, labels={"a": "1"})
    assert round_trips() - before == 2
    runs = []

    def check(tx: Tx, current: Network) -> None:
        runs.append(tx.sandbox_endpoints(sb_id))
        if len(runs) == 1:  # another writer changes what we read
            store.client.hset(repo.keys.sandbox_endpoints(sb_id), "net", "ep")

    moved = ctx.transition(repo.network(net.id), check=check, labels={"a": "2"})
    assert runs == [{}, {"net": "ep"}] and moved.labels == {"a": "2"}
    store.client.delete(repo.keys.sandbox_endpoints(sb_id))


def test_event_revisions_strictly_increase_across_concurrent_appenders(store):
    logs = [EventLog(RedisRepository(store)) for _ in range(4)]

    def append(i: int) -> None:
        logs[i % 4].emit(EventType.NETWORK_CREATED, f"{i:064x}", f"n{i}", {"i": str(i)})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(append, range(200)))
    events = []
    last = 0
    while True:
        batch = logs[0].read(last, count=64)
        if not batch:
            break
        events += batch
        last = batch[-1].revision
    assert [e.revision for e in events] == list(range(1, 201))
    assert sorted(int(e.attributes["i"]) for e in events) == list(range(200))
    # Resuming after revision 150 gives exactly the rest.
    assert [e.revision for e in logs[1].read(150, count=1000)] == list(range(151, 201))
    assert logs[2].last_revision() == 200


def test_follow_from_zero_sees_only_new_events_and_stops_when_inactive(store):
    log = EventLog(RedisRepository(store))
    log.emit(EventType.SANDBOX_CREATED, "old")
    active = threading.Event()
    active.set()
    started = threading.Event()
    got = []

    def reader() -> None:
        for event in log.follow(0, active.is_set):
            # The WATCH_STARTED marker comes first: the reader has its starting point.
            if event.type == EventType.WATCH_STARTED.value:
                started.set()
                continue
            got.append(event)
            if len(got) == 2:
                active.clear()

    t = threading.Thread(target=reader)
    t.start()
    assert started.wait(5), "no WATCH_STARTED marker"
    log.emit(EventType.SANDBOX_CREATED, "new1")
    log.emit(EventType.SANDBOX_DELETED, "new1")
    t.join(5)
    assert not t.is_alive()
    assert [(e.type, e.id) for e in got] == [
        ("sandbox_created", "new1"),
        ("sandbox_deleted", "new1"),
    ]


def test_one_reconciler_lease_among_replicas(store):
    from controller_service.reconciler import Reconciler

    def reconciler(instance: str) -> Reconciler:
        repo = RedisRepository(store)
        cfg = dataclasses.replace(ControllerConfig(), reconcile_interval=0.2, instance_ttl=1.0)
        ctx = Context(cfg=cfg, repo=repo, hosts=None, drivers=None, ipam=None, instance=instance)
        return Reconciler(ctx, None, None, None, None)

    a, b = reconciler("a"), reconciler("b")
    assert a.acquire_lease() and not b.acquire_lease()
    assert a.acquire_lease()  # renewal by the holder
    a.stop()  # hands the lease on
    assert b.acquire_lease() and not a.acquire_lease()
    a.heartbeat()
    assert b.owner_alive("a") and not b.owner_alive("c") and not b.owner_alive("")


def test_a_script_in_a_transaction_is_one_round_trip_and_survives_a_script_flush(store):
    """Scripts queued in a MULTI go as EVAL (Store's pipeline): no SCRIPT EXISTS
    before EXEC, and no NOSCRIPT (which would let the other writes through) when
    Redis lost its script cache, e.g. after a restart."""
    from prometheus_client import REGISTRY

    repo = RedisRepository(store)
    events = EventLog(repo)
    store.client.script_flush()
    key = store.key("test", "script-tx")

    def round_trips() -> float:
        return REGISTRY.get_sample_value("cnm_redis_round_trips_total") or 0.0

    def write(pipe) -> None:
        pipe.multi()
        pipe.set(key, "written")
        repo.append_event(pipe, EventType.NETWORK_CREATED, "n1", "n1")

    before_rev, before = events.last_revision(), round_trips()
    store.transaction(write)
    assert round_trips() - before == 1  # the EXEC pipeline alone
    assert store.client.get(key) == "written"
    assert events.last_revision() == before_rev + 1
    store.client.delete(key)
