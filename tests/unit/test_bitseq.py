"""BitSequence: examples of the contract, then a state machine against a plain-set model."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ipam_service.bitseq import FULL_BLOCK, HEADER_SIZE, RUN_SIZE, BitSequence
from services.errors import AlreadyExists, Exhausted, InvalidArgument

SIZES = [1, 31, 32, 33, 1000, 2**16, 2**64]


# --- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "runs"),
    [
        (1, [(0x7FFFFFFF, 1)]),
        (31, [(0x00000001, 1)]),
        (32, [(0, 1)]),
        (33, [(0, 1), (0x7FFFFFFF, 1)]),
        (2**16, [(0, 2048)]),
        (2**64, [(0, 2**59)]),
    ],
    ids=["1-bit", "31-bits", "one-block", "33-bits", "slash-16", "slash-64"],
)
def test_new_sequence_is_free_with_padding_set(size: int, runs: list[tuple[int, int]]) -> None:
    seq = BitSequence(size)
    assert seq.runs() == runs
    assert seq.free_count == size
    assert seq.first_free() == 0


@pytest.mark.parametrize("size", [0, -1, 2**64 + 1, True, 1.5], ids=repr)
def test_size_outside_1_to_2_64_is_invalid(size: object) -> None:
    with pytest.raises(InvalidArgument):
        BitSequence(size)  # type: ignore[arg-type]


@pytest.mark.parametrize("ordinal", [-1, 33, 2**64, True, "3"], ids=repr)
def test_ordinal_outside_sequence_is_invalid(ordinal: object) -> None:
    seq = BitSequence(33)
    for op in (seq.set, seq.unset, seq.is_set, seq.first_free):
        with pytest.raises(InvalidArgument):
            op(ordinal)  # type: ignore[arg-type]


def test_ordinal_zero_is_the_most_significant_bit_of_block_zero() -> None:
    seq = BitSequence(64)
    seq.set(0)
    seq.set(63)
    assert seq.runs() == [(0x80000000, 1), (0x00000001, 1)]


def test_set_twice_is_already_exists_and_changes_nothing() -> None:
    seq = BitSequence(100)
    seq.set(7)
    before = seq.to_bytes()
    with pytest.raises(AlreadyExists):
        seq.set(7)
    assert seq.to_bytes() == before


def test_unset_is_idempotent() -> None:
    seq = BitSequence(100)
    seq.set(7)
    assert seq.unset(7) is True
    assert seq.unset(7) is False
    assert seq == BitSequence(100)


def test_filling_every_bit_merges_into_one_full_run() -> None:
    seq = BitSequence(1000)
    assert [seq.allocate() for _ in range(1000)] == list(range(1000))
    assert seq.runs() == [(FULL_BLOCK, 32)]
    assert seq.free_count == 0
    with pytest.raises(Exhausted):
        seq.allocate()


def test_releasing_everything_merges_back_to_the_fresh_form() -> None:
    seq = BitSequence(2**16)
    for _ in range(5000):
        seq.allocate()
    for ordinal in range(0, 5000, 2):
        seq.unset(ordinal)
    for ordinal in range(1, 5000, 2):
        seq.unset(ordinal)
    assert seq.to_bytes() == BitSequence(2**16).to_bytes()


def test_first_free_in_range_skips_taken_bits_and_respects_the_end() -> None:
    seq = BitSequence(256)
    for ordinal in range(40, 100):
        seq.set(ordinal)
    assert seq.first_free(40, 200) == 100
    assert seq.first_free(10, 200) == 10
    with pytest.raises(Exhausted):
        seq.first_free(40, 99)


@pytest.mark.parametrize(("start", "end"), [(5, 4), (0, 256)], ids=["reversed", "end-past-size"])
def test_bad_range_is_invalid(start: int, end: int) -> None:
    with pytest.raises(InvalidArgument):
        BitSequence(256).first_free(start, end)


def test_serial_continues_after_the_last_bit_and_wraps() -> None:
    seq = BitSequence(8, serial=True)
    assert [seq.allocate() for _ in range(4)] == [0, 1, 2, 3]
    seq.unset(1)
    assert seq.allocate() == 4  # the released bit waits for the wrap
    for _ in range(3):
        seq.allocate()
    assert seq.cursor == 0
    assert seq.allocate() == 1


def test_serial_in_a_sub_range_wraps_to_the_sub_range_start() -> None:
    seq = BitSequence(100, serial=True)
    assert seq.allocate(10, 12) == 10
    assert seq.allocate(10, 12) == 11
    seq.unset(10)
    assert seq.allocate(10, 12) == 12
    assert seq.allocate(10, 12) == 10
    with pytest.raises(Exhausted):
        seq.allocate(10, 12)


def test_non_serial_call_on_serial_sequence_takes_the_lowest_and_keeps_cursor() -> None:
    seq = BitSequence(8, serial=True)
    seq.allocate()
    seq.allocate()
    seq.unset(0)
    assert seq.allocate(serial=False) == 0
    assert seq.cursor == 2


def test_slash_64_with_scattered_bits_costs_bytes() -> None:
    seq = BitSequence(2**64, serial=True)
    for _ in range(100_000):
        seq.allocate()
    for ordinal in (2**64 - 1, 2**63, 12345678901234567890):
        seq.set(ordinal)
    assert len(seq.to_bytes()) < 200
    assert seq.free_count == 2**64 - 100_003
    assert seq.first_free(2**64 - 2) == 2**64 - 2


def test_full_2_64_sequence_round_trips_with_exact_counts() -> None:
    # `used` wraps to 0 in the header; the single full run tells the truth.
    data = struct.pack(">BB6I", 1, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0, 0, 0)
    data += struct.pack(">3I", 0, 0, FULL_BLOCK)
    seq = BitSequence.from_bytes(data)
    assert seq.free_count == 0
    assert seq.to_bytes() == data
    assert seq.unset(2**64 - 1)
    assert seq.free_count == 1
    assert BitSequence.from_bytes(seq.to_bytes()) == seq


def _header(last: int = 63, cursor: int = 0, used: int = 0, version: int = 1, flags: int = 0):
    return struct.pack(
        ">BB6I", version, flags, last >> 32, last & 0xFFFFFFFF, cursor >> 32,
        cursor & 0xFFFFFFFF, used >> 32, used & 0xFFFFFFFF,
    )  # fmt: skip


def _run(start: int, value: int) -> bytes:
    return struct.pack(">3I", start >> 32, start & 0xFFFFFFFF, value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        _header(),
        _header() + _run(0, 0)[:-1],
        _header(version=2) + _run(0, 0),
        _header(flags=0x80) + _run(0, 0),
        _header() + _run(1, 0),
        _header() + _run(0, 0) + _run(0, 1),
        _header() + _run(0, 0) + _run(2, 1),
        _header() + _run(0, 0) + _run(1, 0),
        _header(last=32) + _run(0, 0) + _run(1, 0),
        _header(cursor=64) + _run(0, 0),
        _header(used=1) + _run(0, 0),
    ],
    ids=[
        "empty", "no-runs", "truncated-run", "unknown-version", "unknown-flag",
        "first-run-not-at-0", "starts-not-increasing", "start-past-end", "unmerged-runs",
        "padding-clear", "cursor-past-end", "used-count-mismatch",
    ],
)  # fmt: skip
def test_malformed_serialized_form_is_rejected(data: bytes) -> None:
    with pytest.raises(InvalidArgument):
        BitSequence.from_bytes(data)


def test_serialized_form_is_header_plus_fixed_size_runs() -> None:
    seq = BitSequence(2**16, serial=True)
    seq.set(33)
    data = seq.to_bytes()
    assert len(data) == HEADER_SIZE + 3 * RUN_SIZE
    assert data[:HEADER_SIZE] == _header(last=2**16 - 1, used=1, flags=1)
    assert data[HEADER_SIZE:] == _run(0, 0) + _run(1, 0x40000000) + _run(2, 0)


# --- property test against a plain-set model -------------------------------------------------


def ordinals(size: int) -> st.SearchStrategy[int]:
    """Dense windows (so blocks fill and runs merge) at the edges and the middle, plus anywhere."""
    windows = [st.integers(0, min(size - 1, 80))]
    if size > 80:
        mid = size // 2
        windows += [
            st.integers(size - 80, size - 1),
            st.integers(mid - 40, mid + 40),
            st.integers(0, size - 1),
        ]
    return st.one_of(windows)


class SetModel:
    """The obvious implementation: a set of taken ordinals and a cursor."""

    def __init__(self, size: int, serial: bool) -> None:
        self.size, self.serial, self.cursor, self.taken = size, serial, 0, set[int]()

    def first_free(self, start: int, end: int) -> int | None:
        ordinal = start
        while ordinal in self.taken:
            ordinal += 1
        return ordinal if ordinal <= end else None

    def allocate(self, start: int, end: int, serial: bool | None) -> int | None:
        serial = self.serial if serial is None else serial
        found = None
        if serial and start < self.cursor <= end:
            found = self.first_free(self.cursor, end)
        if found is None:
            found = self.first_free(start, end)
        if found is not None:
            self.taken.add(found)
            if serial:
                self.cursor = (found + 1) % self.size
        return found


def machine_for(size: int) -> type[RuleBasedStateMachine]:
    class BitSequenceMachine(RuleBasedStateMachine):
        @initialize(serial=st.booleans())
        def create(self, serial: bool) -> None:
            self.seq = BitSequence(size, serial=serial)
            self.model = SetModel(size, serial)

        @rule(ordinal=ordinals(size))
        def set(self, ordinal: int) -> None:
            if ordinal in self.model.taken:
                with pytest.raises(AlreadyExists):
                    self.seq.set(ordinal)
            else:
                self.seq.set(ordinal)
                self.model.taken.add(ordinal)

        @rule(start=ordinals(size), length=st.integers(1, 80))
        def fill(self, start: int, length: int) -> None:
            for ordinal in range(start, min(start + length, size)):
                if ordinal not in self.model.taken:
                    self.seq.set(ordinal)
                    self.model.taken.add(ordinal)

        @rule(ordinal=ordinals(size))
        def unset(self, ordinal: int) -> None:
            assert self.seq.unset(ordinal) == (ordinal in self.model.taken)
            self.model.taken.discard(ordinal)

        @rule(ordinal=ordinals(size))
        def is_set(self, ordinal: int) -> None:
            assert self.seq.is_set(ordinal) == (ordinal in self.model.taken)

        @rule(a=ordinals(size), b=ordinals(size))
        def first_free(self, a: int, b: int) -> None:
            start, end = min(a, b), max(a, b)
            expected = self.model.first_free(start, end)
            if expected is None:
                with pytest.raises(Exhausted):
                    self.seq.first_free(start, end)
            else:
                assert self.seq.first_free(start, end) == expected

        @rule(a=ordinals(size), b=ordinals(size), serial=st.sampled_from([None, True, False]))
        def allocate_in_range(self, a: int, b: int, serial: bool | None) -> None:
            start, end = min(a, b), max(a, b)
            expected = self.model.allocate(start, end, serial)
            if expected is None:
                with pytest.raises(Exhausted):
                    self.seq.allocate(start, end, serial=serial)
            else:
                assert self.seq.allocate(start, end, serial=serial) == expected

        @rule(serial=st.sampled_from([None, True, False]))
        def allocate(self, serial: bool | None) -> None:
            expected = self.model.allocate(0, size - 1, serial)
            if expected is None:
                with pytest.raises(Exhausted):
                    self.seq.allocate(serial=serial)
            else:
                assert self.seq.allocate(serial=serial) == expected

        @invariant()
        def counts_and_cursor_match(self) -> None:
            assert self.seq.free_count == size - len(self.model.taken)
            assert self.seq.cursor == self.model.cursor

        @invariant()
        def round_trips_and_stays_merged(self) -> None:
            data = self.seq.to_bytes()
            again = BitSequence.from_bytes(data)  # validates merging, padding, counts
            assert again.to_bytes() == data
            assert again.free_count == self.seq.free_count

        @invariant()
        def set_bits_match(self) -> None:
            assert list(self.seq.iter_set()) == sorted(self.model.taken)

        @rule(a=ordinals(size), b=ordinals(size))
        def count_and_iterate_from(self, a: int, b: int) -> None:
            start, end = min(a, b), max(a, b)
            taken = self.model.taken
            assert self.seq.count_set(start, end) == sum(start <= o <= end for o in taken)
            assert list(self.seq.iter_set(start)) == sorted(o for o in taken if o >= start)

    BitSequenceMachine.__name__ = f"BitSequenceMachine_{size}"
    return BitSequenceMachine


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"size-{s}")
def test_bit_sequence_behaves_like_a_set(size: int) -> None:
    run_state_machine_as_test(
        machine_for(size),
        settings=settings(
            max_examples=60, stateful_step_count=40, deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )  # fmt: skip
