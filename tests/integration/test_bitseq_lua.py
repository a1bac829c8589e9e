"""The Lua twin in a real redis-server, cross-checked step by step against BitSequence.

After every operation the Redis key must hold exactly `BitSequence.to_bytes()` of the
Python sequence that went through the same operations, and both must answer alike.
"""

from __future__ import annotations

import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ipam_service.bitseq import BitSequence
from ipam_service.bitseq_redis import RedisBitSequence
from services.errors import AlreadyExists, CnmError, Exhausted, InvalidArgument, NotFound

SIZES = [1, 31, 32, 33, 1000, 2**16, 2**64]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    try:
        yield c
    finally:
        c.close()


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """('ok', value) or ('error', domain error class) so the twins can be compared."""
    try:
        return "ok", fn()
    except CnmError as e:
        return "error", type(e)


# --- examples ---------------------------------------------------------------------------------


def test_allocate_records_the_owner_in_the_same_step(client: redis.Redis) -> None:
    seq = RedisBitSequence(client, "ipam:{p}:bits", owners_key="ipam:{p}:owners")
    seq.create(256, serial=True, reserved=[0, 255])
    assert seq.allocate(owner="gateway") == 1
    assert seq.allocate(owner="ep-1") == 2
    assert seq.owners() == {1: "gateway", 2: "ep-1"}
    assert seq.info().used == 4


def test_conditional_unset_leaves_a_bit_held_by_another_owner(client: redis.Redis) -> None:
    seq = RedisBitSequence(client, "b", owners_key="o")
    seq.create(64)
    seq.set(5, owner="new-holder")
    assert seq.unset(5, if_owner="stale-holder") is False
    assert seq.is_set(5)
    assert seq.unset(5, if_owner="new-holder") is True
    assert seq.owner(5) is None
    assert seq.unset(5) is False


def test_owner_field_is_the_exact_decimal_ordinal_beyond_2_53(client: redis.Redis) -> None:
    seq = RedisBitSequence(client, "b", owners_key="o")
    seq.create(2**64, serial=True)
    seq.set(12345678901234567890, owner="x")
    assert seq.allocate(2**64 - 10, owner="y") == 2**64 - 10
    assert seq.allocate(2**53 + 1, 2**53 + 1, owner="z") == 2**53 + 1
    assert client.hgetall("o") == {
        b"12345678901234567890": b"x",
        b"18446744073709551606": b"y",
        b"9007199254740993": b"z",
    }


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.allocate(), NotFound),
        (lambda s: s.set(1), NotFound),
        (lambda s: s.info(), NotFound),
        (lambda s: s.load(), NotFound),
    ],
    ids=["allocate", "set", "info", "load"],
)
def test_missing_sequence_is_not_found(client: redis.Redis, call, error) -> None:
    with pytest.raises(error):
        call(RedisBitSequence(client, "missing"))


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.set(64),
        lambda s: s.allocate(0, 64),
        lambda s: s.allocate(5, 4),
        lambda s: s.allocate(start=64),
        lambda s: s.is_set(-1),
        lambda s: s.set(2**64),
        lambda s: s.allocate(owner="x"),
    ],
    ids=["set-past-end", "range-past-end", "reversed-range", "start-past-end", "negative", "past-2-64", "no-owners-key"],
)  # fmt: skip
def test_bad_arguments_are_invalid_and_change_nothing(client: redis.Redis, call) -> None:
    seq = RedisBitSequence(client, "b")
    seq.create(64)
    before = client.get("b")
    with pytest.raises(InvalidArgument):
        call(seq)
    assert client.get("b") == before


def test_owners_key_of_the_wrong_type_leaves_the_bit_free(client: redis.Redis) -> None:
    seq = RedisBitSequence(client, "b", owners_key="o")
    seq.create(64)
    client.set("o", "not a hash")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        seq.allocate(owner="x")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        seq.set(3, owner="x")
    assert seq.info().used == 0


def test_create_twice_is_already_exists_unless_exist_ok(client: redis.Redis) -> None:
    seq = RedisBitSequence(client, "b", owners_key="o")
    assert seq.create(64) is True
    seq.set(3, owner="x")
    with pytest.raises(AlreadyExists):
        seq.create(64)
    assert seq.create(64, exist_ok=True) is False
    assert seq.is_set(3)
    seq.delete()
    seq.delete()
    assert client.exists("b", "o") == 0


def test_full_sequence_is_exhausted(client: redis.Redis) -> None:
    seq = RedisBitSequence(client, "b")
    seq.create(33)
    assert sorted(seq.allocate() for _ in range(33)) == list(range(33))
    with pytest.raises(Exhausted):
        seq.allocate()
    assert seq.info().free == 0
    assert seq.load().runs() == [(0xFFFFFFFF, 2)]


def test_full_2_64_sequence_counts_exactly_across_the_wrap(client: redis.Redis) -> None:
    # A full 2**64-bit sequence stores used = 0 (mod 2**64); releasing one bit must
    # borrow across both 32-bit words, exactly as in Python.
    full = BitSequence.from_bytes(
        struct.pack(">BB6I", 1, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0, 0, 0)
        + struct.pack(">3I", 0, 0, 0xFFFFFFFF)
    )
    seq = RedisBitSequence(client, "b")
    seq.create_from(full)
    assert seq.info().free == 0
    assert seq.unset(2**64 - 1) is True
    full.unset(2**64 - 1)
    assert client.get("b") == full.to_bytes()
    assert (seq.info().used, seq.info().free) == (2**64 - 1, 1)
    assert seq.allocate() == 2**64 - 1


def test_concurrent_clients_never_share_a_bit(redis_url: str) -> None:
    size, workers = 1024, 8
    RedisBitSequence(redis.Redis.from_url(redis_url), "b", owners_key="o").create(size, serial=True)
    got: list[list[int]] = [[] for _ in range(workers)]

    def work(n: int) -> None:
        c = redis.Redis.from_url(redis_url)
        seq = RedisBitSequence(c, "b", owners_key="o")
        try:
            while True:
                got[n].append(seq.allocate(owner=f"w{n}"))
        except Exhausted:
            pass
        finally:
            c.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    everything = [o for per_worker in got for o in per_worker]
    assert sorted(everything) == list(range(size))
    owners = RedisBitSequence(redis.Redis.from_url(redis_url), "b", owners_key="o").owners()
    assert all(owners[o] == f"w{n}" for n, per_worker in enumerate(got) for o in per_worker)


# --- the twins, step by step -------------------------------------------------------------------


def ordinals(size: int) -> st.SearchStrategy[int]:
    windows = [st.integers(0, min(size - 1, 80))]
    if size > 80:
        windows += [st.integers(size - 80, size - 1), st.integers(0, size - 1)]
    return st.one_of(windows)


def machine_for(client: redis.Redis, size: int) -> type[RuleBasedStateMachine]:
    class TwinMachine(RuleBasedStateMachine):
        @initialize(serial=st.booleans(), reserved=st.lists(ordinals(size), max_size=5))
        def create(self, serial: bool, reserved: list[int]) -> None:
            key = f"bits-{uuid.uuid4().hex}"
            self.red = RedisBitSequence(client, key, owners_key=f"{key}-owners")
            self.red.create(size, serial=serial, reserved=reserved)
            self.py = BitSequence(size, serial=serial)
            for ordinal in reserved:
                if not self.py.is_set(ordinal):
                    self.py.set(ordinal)
            self.owners: dict[int, str] = {}

        def teardown(self) -> None:
            if hasattr(self, "red"):
                self.red.delete()

        @rule(ordinal=ordinals(size), owner=st.sampled_from([None, "a", "b"]))
        def set(self, ordinal: int, owner: str | None) -> None:
            got = _outcome(lambda: self.red.set(ordinal, owner=owner))
            assert got == _outcome(lambda: self.py.set(ordinal))
            if got[0] == "ok" and owner is not None:
                self.owners[ordinal] = owner

        @rule(start=ordinals(size), length=st.integers(1, 64))
        def fill(self, start: int, length: int) -> None:
            for ordinal in range(start, min(start + length, size)):
                assert _outcome(lambda o=ordinal: self.red.set(o)) == _outcome(
                    lambda o=ordinal: self.py.set(o)
                )

        @rule(ordinal=ordinals(size), if_owner=st.sampled_from([None, "a", "b"]))
        def unset(self, ordinal: int, if_owner: str | None) -> None:
            released = self.red.unset(ordinal, if_owner=if_owner)
            if if_owner is None or self.owners.get(ordinal) == if_owner:
                assert released == self.py.unset(ordinal)
                self.owners.pop(ordinal, None)
            else:
                assert released is False

        @rule(ordinal=ordinals(size))
        def is_set(self, ordinal: int) -> None:
            assert self.red.is_set(ordinal) == self.py.is_set(ordinal)

        @rule(
            a=st.none() | ordinals(size), b=st.none() | ordinals(size),
            serial=st.sampled_from([None, True, False]), owner=st.sampled_from([None, "a", "b"]),
        )  # fmt: skip
        def allocate(self, a: int | None, b: int | None, serial: bool | None, owner: str | None):
            if a is not None and b is not None:
                a, b = min(a, b), max(a, b)
            got = _outcome(lambda: self.red.allocate(a, b, serial=serial, owner=owner))
            assert got == _outcome(lambda: self.py.allocate(a, b, serial=serial))
            if got[0] == "ok" and owner is not None:
                self.owners[got[1]] = owner

        @invariant()
        def same_bytes(self) -> None:
            assert client.get(self.red.key) == self.py.to_bytes()

        @invariant()
        def same_counts_and_owners(self) -> None:
            info = self.red.info()
            assert (info.size, info.used, info.cursor, info.runs) == (
                size, self.py.used_count, self.py.cursor, self.py.run_count,
            )  # fmt: skip
            assert self.red.owners() == self.owners

    return TwinMachine


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"size-{s}")
def test_lua_twin_matches_python_byte_for_byte(client: redis.Redis, size: int) -> None:
    run_state_machine_as_test(
        machine_for(client, size),
        settings=settings(
            max_examples=40, stateful_step_count=30, deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )  # fmt: skip
