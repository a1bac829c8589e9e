"""IdRange: examples (VXLAN VNIs among them), then a state machine against a plain-set model."""

from __future__ import annotations

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

from ipam_service.idm import IdRange
from services.errors import AlreadyExists, Exhausted, InvalidArgument

VNI_MIN, VNI_MAX = 256, 2**24 - 1

# (start, end) ranges holding 1, 31, 32, 33, 1000, 2**16 and 2**64 ids, at varied offsets.
RANGES = [
    (7, 7),
    (100, 130),
    (0, 31),
    (1, 33),
    (VNI_MIN, VNI_MIN + 999),
    (VNI_MIN, VNI_MIN + 2**16 - 1),
    (0, 2**64 - 1),
]


def test_vni_range_hands_out_the_lowest_free_vni() -> None:
    vnis = IdRange(VNI_MIN, VNI_MAX)
    assert [vnis.get_any() for _ in range(3)] == [256, 257, 258]
    vnis.release(257)
    assert vnis.get_any() == 257
    assert vnis.get_specific(4096) == 4096
    assert vnis.free_count == VNI_MAX - VNI_MIN + 1 - 4
    assert len(vnis.to_bytes()) < 100


def test_serial_range_does_not_reuse_a_released_id_until_it_wraps() -> None:
    ids = IdRange(10, 13, serial=True)
    assert [ids.get_any() for _ in range(3)] == [10, 11, 12]
    ids.release(10)
    assert ids.get_any() == 13
    assert ids.get_any() == 10
    with pytest.raises(Exhausted, match=r"\[10, 13\] is full"):
        ids.get_any()


def test_get_specific_taken_is_already_exists() -> None:
    ids = IdRange(VNI_MIN, VNI_MAX)
    ids.get_specific(300)
    with pytest.raises(AlreadyExists, match="300"):
        ids.get_specific(300)


@pytest.mark.parametrize("id_", [255, 2**24, -1, True], ids=["below", "above", "negative", "bool"])
def test_id_outside_the_range_is_invalid(id_: int) -> None:
    ids = IdRange(VNI_MIN, VNI_MAX)
    for op in (ids.get_specific, ids.release, ids.is_taken):
        with pytest.raises(InvalidArgument):
            op(id_)


@pytest.mark.parametrize(
    ("start", "end"),
    [(5, 4), (-1, 3), (0, 2**64), (1.0, 3)],
    ids=["reversed", "negative", "more-than-2-64-ids", "float"],
)
def test_bad_range_is_invalid(start: int, end: int) -> None:
    with pytest.raises(InvalidArgument):
        IdRange(start, end)


def test_get_in_range_stays_inside_the_sub_range() -> None:
    ids = IdRange(0, 99)
    assert ids.get_in_range(50, 51) == 50
    assert ids.get_in_range(50, 51) == 51
    with pytest.raises(Exhausted, match=r"\[50, 51\]"):
        ids.get_in_range(50, 51)
    with pytest.raises(InvalidArgument):
        ids.get_in_range(51, 50)
    with pytest.raises(InvalidArgument):
        ids.get_in_range(90, 100)


def test_release_is_idempotent_and_round_trip_keeps_the_offset() -> None:
    ids = IdRange(1000, 1099, serial=True)
    ids.get_specific(1050)
    assert ids.release(1050) is True
    assert ids.release(1050) is False
    ids.get_any()
    again = IdRange.from_bytes(1000, ids.to_bytes())
    assert (again.start, again.end, again.serial) == (1000, 1099, True)
    assert again.get_any() == 1001


def machine_for(lo: int, hi: int) -> type[RuleBasedStateMachine]:
    width = hi - lo + 1
    ids = st.one_of(
        st.integers(lo, min(hi, lo + 80)),
        st.integers(max(lo, hi - 80), hi),
        st.integers(lo, hi),
    )

    class IdRangeMachine(RuleBasedStateMachine):
        @initialize(serial=st.booleans())
        def create(self, serial: bool) -> None:
            self.ids = IdRange(lo, hi, serial=serial)
            self.serial, self.cursor, self.taken = serial, 0, set[int]()

        def _expect(self, a: int, b: int, serial: bool | None) -> int | None:
            """Model of a serial-aware allocation; the cursor is an offset as in bitseq."""
            serial = self.serial if serial is None else serial

            def lowest(x: int) -> int | None:
                while x in self.taken:
                    x += 1
                return x if x <= b else None

            found = None
            if serial and a < lo + self.cursor <= b:
                found = lowest(lo + self.cursor)
            if found is None:
                found = lowest(a)
            if found is not None:
                self.taken.add(found)
                if serial:
                    self.cursor = (found - lo + 1) % width
            return found

        @rule(serial=st.sampled_from([None, True, False]))
        def get_any(self, serial: bool | None) -> None:
            expected = self._expect(lo, hi, serial)
            if expected is None:
                with pytest.raises(Exhausted):
                    self.ids.get_any(serial=serial)
            else:
                assert self.ids.get_any(serial=serial) == expected

        @rule(a=ids, b=ids, serial=st.sampled_from([None, True, False]))
        def get_in_range(self, a: int, b: int, serial: bool | None) -> None:
            a, b = min(a, b), max(a, b)
            expected = self._expect(a, b, serial)
            if expected is None:
                with pytest.raises(Exhausted):
                    self.ids.get_in_range(a, b, serial=serial)
            else:
                assert self.ids.get_in_range(a, b, serial=serial) == expected

        @rule(id_=ids)
        def get_specific(self, id_: int) -> None:
            if id_ in self.taken:
                with pytest.raises(AlreadyExists):
                    self.ids.get_specific(id_)
            else:
                assert self.ids.get_specific(id_) == id_
                self.taken.add(id_)

        @rule(id_=ids)
        def release(self, id_: int) -> None:
            assert self.ids.release(id_) == (id_ in self.taken)
            self.taken.discard(id_)

        @rule(id_=ids)
        def is_taken(self, id_: int) -> None:
            assert self.ids.is_taken(id_) == (id_ in self.taken)

        @invariant()
        def counts_match(self) -> None:
            assert self.ids.used_count == len(self.taken)
            assert self.ids.free_count == width - len(self.taken)

        @invariant()
        def round_trips(self) -> None:
            again = IdRange.from_bytes(lo, self.ids.to_bytes())
            assert again.to_bytes() == self.ids.to_bytes()
            assert [lo + o for o in again.bits.iter_set()] == sorted(self.taken)

    IdRangeMachine.__name__ = f"IdRangeMachine_{lo}_{hi}"
    return IdRangeMachine


@pytest.mark.parametrize(("lo", "hi"), RANGES, ids=lambda r: str(r))
def test_id_range_behaves_like_a_set(lo: int, hi: int) -> None:
    run_state_machine_as_test(
        machine_for(lo, hi),
        settings=settings(
            max_examples=50, stateful_step_count=40, deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )  # fmt: skip
