"""The store contract (controller_service/repository.py) held by both
implementations: the Redis store against a real redis-server, and the
in-memory one the unit tests of the orchestration run on. What one does the
other must do, or those unit tests prove nothing."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from controller_service.memory_repository import MemoryRepository
from controller_service.models import Endpoint, EndpointState, Network, Scope, State, to_json
from controller_service.redis_repository import RedisRepository
from controller_service.repository import Claim, Read, Repository, Tx, making
from services.errors import InvalidArgument
from services.store import Store

_prefix = itertools.count()


@pytest.fixture(params=["redis", "memory"])
def repo(request, redis_url):
    if request.param == "memory":
        yield MemoryRepository()
        return
    store = Store(redis_url, f"contract{next(_prefix)}")
    yield RedisRepository(store)
    for key in store.client.scan_iter(store.key("*")):
        store.client.delete(key)
    store.close()


NET = Network(id="a" * 64, name="n1", driver="bridge", scope=Scope.LOCAL, state=State.READY)
EP = Endpoint(
    id="e" * 64,
    name="e1",
    network_id=NET.id,
    network_name="n1",
    state=EndpointState.CREATING,
    op_since=7.0,
)


def _create(repo: Repository) -> None:
    def fn(tx: Tx) -> None:
        tx.begin()
        tx.put(NET)
        tx.put(EP)
        tx.add_network_endpoint(NET.id, EP.id)
        tx.attach("s" * 64, NET.id, EP.id)
        tx.event("endpoint_created", EP.id, EP.name, {"network": NET.id})

    repo.tx(fn)


def test_records_indexes_intents_and_events_commit_together(repo):
    _create(repo)
    assert repo.network(NET.id) == NET and repo.endpoint(EP.id) == EP
    assert repo.network_id_by_name("n1") == NET.id
    assert repo.endpoint_id_by_name(NET.id, "e1") == EP.id
    assert repo.network_endpoint_ids(NET.id) == {EP.id}
    assert repo.sandbox_endpoints("s" * 64) == {NET.id: EP.id}
    assert repo.intents() == [("ep", EP.id)]  # CREATING is an intent, READY is not
    assert [(e.revision, e.type, e.attributes) for e in repo.read_events(0)] == [
        (1, "endpoint_created", {"network": NET.id})
    ]
    assert repo.endpoint_counts() == [(NET, 1)]
    assert repo.ids_with_prefix("net", "aaa") == [NET.id] and repo.exists("ep", EP.id)


def test_a_transaction_that_raises_writes_nothing(repo):
    def fn(tx: Tx) -> None:
        assert tx.network_id_by_name("n1") is None
        tx.begin()
        tx.put(NET)
        tx.event("network_created", NET.id)
        raise InvalidArgument("changed my mind")

    with pytest.raises(InvalidArgument):
        repo.tx(fn)
    assert repo.all_networks() == [] and repo.last_revision() == 0


def test_removal_and_detach_clear_the_indexes(repo):
    _create(repo)

    def fn(tx: Tx) -> None:
        tx.begin()
        tx.remove(EP)
        tx.remove_network_endpoint(NET.id, EP.id)
        tx.detach("s" * 64, NET.id)
        tx.put(dataclasses.replace(NET, state=State.DELETING, op_since=1.0))

    repo.tx(fn)
    assert repo.endpoint(EP.id) is None and repo.endpoint_id_by_name(NET.id, "e1") is None
    assert repo.network_endpoint_ids(NET.id) == set() and repo.sandbox_endpoints("s" * 64) == {}
    assert repo.intents() == [("net", NET.id)]
    repo.drop_intent("net", NET.id)
    assert repo.intents() == []


def test_request_claims(repo):
    assert repo.claim_request("r1", "network", "id1", 60, "me") is None
    assert repo.claim_request("r1", "network", "id2", 60, "you") == {
        "kind": "network",
        "id": "id1",
        "by": "me",
    }
    repo.request_done("r1", "network", "id1", "me")
    assert repo.request_claim("r1")["done"] is True
    repo.forget_request("r1")
    assert repo.request_claim("r1") is None
    with pytest.raises(InvalidArgument):
        repo.claim_request("r" * 257, "network", "id", 60, "me")


def test_lease_liveness_and_network_hosts(repo):
    assert repo.acquire_lease("a", 60) and not repo.acquire_lease("b", 60)
    assert repo.lease_holder() == "a"
    repo.release_lease("b")  # not the holder: nothing happens
    repo.release_lease("a")
    assert repo.acquire_lease("b", 60)
    repo.mark_alive("a", "host:1", 60)
    assert repo.is_alive("a") and not repo.is_alive("c")
    repo.mark_network_host(NET.id, "h1", ready=False)
    assert repo.network_hosts(NET.id) == {"h1"} and not repo.network_ready_on(NET.id, "h1")
    repo.mark_network_host(NET.id, "h1", ready=True)
    repo.mark_network_host(NET.id, "h1", ready=False)  # pending never downgrades ready
    assert repo.network_ready_on(NET.id, "h1")
    repo.record_host_state("h1", "ready", "host_up", {"state": "ready"})
    assert repo.host_states() == {"h1": "ready"}
    assert [e.type for e in repo.read_events(0)] == ["host_up"]


def test_reads_by_name_and_through_the_sandbox(repo):
    _create(repo)
    assert repo.record_by_name("net", "n1") == NET and repo.record_by_name("net", "n2") is None
    assert repo.record_by_name("sb", "n1") is None
    assert repo.sandbox_endpoint("s" * 64, NET.id) == EP
    assert repo.sandbox_endpoint("s" * 64, "b" * 64) is None
    assert repo.sandbox_endpoint("t" * 64, NET.id) is None


def test_prefetched_reads_answer_as_reads_and_stay_watched(repo):
    _create(repo)
    reads = (Read.record("net", NET.id), Read.endpoint_name(NET.id, "e1"))
    reads += (Read.sandbox_endpoints("s" * 64), Read.record("ep", "f" * 64))
    attempts = []

    def fn(tx: Tx) -> None:
        tx.prefetch(reads)
        attempts.append((tx.network(NET.id), tx.endpoint_id_by_name(NET.id, "e1")))
        assert tx.sandbox_endpoints("s" * 64) == {NET.id: EP.id}
        assert tx.endpoint("f" * 64) is None
        if len(attempts) == 1 and isinstance(repo, RedisRepository):
            # A change to a prefetched key after it was read: the commit
            # fails and the transaction runs again on what is there now.
            repo.c.set(repo.keys.obj("net", NET.id), to_json(dataclasses.replace(NET, name="x")))
        tx.begin()
        tx.event("touched", NET.id)

    repo.tx(fn)
    assert attempts[0] == (NET, EP.id)
    if isinstance(repo, RedisRepository):
        assert len(attempts) == 2 and attempts[1][0].name == "x"
    assert [e.type for e in repo.read_events(0)] == ["endpoint_created", "touched"]


def test_the_commit_settling_a_claimed_object_completes_its_claim(repo):
    claim = Claim("r1", "endpoint", EP.id, "me")
    assert repo.claim_request("r1", "endpoint", EP.id, 60, "me") is None

    def put(ep: Endpoint) -> None:
        def fn(tx: Tx) -> None:
            tx.begin()
            tx.put(ep)

        repo.tx(fn)

    with making(claim):
        put(EP)  # CREATING: not made yet
        assert not claim.done and "done" not in repo.request_claim("r1")
        put(dataclasses.replace(EP, state=EndpointState.READY, op_since=0.0))
    assert claim.done and repo.request_claim("r1")["done"] is True
    put(dataclasses.replace(EP, state=EndpointState.READY, name="outside"))
    assert repo.request_claim("r1") == {"kind": "endpoint", "id": EP.id, "by": "me", "done": True}
