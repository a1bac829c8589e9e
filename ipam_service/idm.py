"""Id ranges on top of a bit sequence (libnetwork's `idm`).

An `IdRange(start, end)` hands out integers in [start, end] inclusive: VXLAN VNIs
(256 .. 2**24 - 1), bridge indices, anything numbered. Id `i` is bit `i - start` of
a `BitSequence`, so the range may be as large as 2**64 ids and costs memory in
proportion to its fragmentation, not its width.

The range bounds are not part of the serialized bit sequence (it only knows its
size); `to_bytes` / `from_bytes` take `start` alongside, and the Redis twin keeps
them in the caller's metadata.
"""

from __future__ import annotations

from services.errors import AlreadyExists, Exhausted, InvalidArgument

from .bitseq import MAX_SIZE, BitSequence

__all__ = ["IdRange"]


class IdRange:
    """Allocator of integer ids in [start, end] inclusive."""

    __slots__ = ("_start", "_end", "_bits")

    def __init__(self, start: int, end: int, *, serial: bool = False) -> None:
        for name, value in (("start", start), ("end", end)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgument(f"id range {name} {value!r} is not a non-negative integer")
        if end < start:
            raise InvalidArgument(f"id range [{start}, {end}] is empty")
        if end - start + 1 > MAX_SIZE:
            raise InvalidArgument(f"id range [{start}, {end}] holds more than 2**64 ids")
        self._start, self._end = start, end
        self._bits = BitSequence(end - start + 1, serial=serial)

    @property
    def start(self) -> int:
        return self._start

    @property
    def end(self) -> int:
        return self._end

    @property
    def serial(self) -> bool:
        return self._bits.serial

    @property
    def free_count(self) -> int:
        return self._bits.free_count

    @property
    def used_count(self) -> int:
        return self._bits.used_count

    @property
    def bits(self) -> BitSequence:
        """The underlying sequence (bit i is id start + i); for inspection and storage."""
        return self._bits

    def __contains__(self, id_: object) -> bool:
        return isinstance(id_, int) and self._start <= id_ <= self._end

    def __repr__(self) -> str:
        return f"IdRange({self._start}, {self._end}, used={self.used_count}, serial={self.serial})"

    def get_any(self, *, serial: bool | None = None) -> int:
        """The lowest free id (or the next one after the last, when serial). Exhausted if full."""
        try:
            return self._start + self._bits.allocate(serial=serial)
        except Exhausted as e:
            raise Exhausted(f"id range [{self._start}, {self._end}] is full") from e

    def get_specific(self, id_: int) -> int:
        """Take exactly `id_`; AlreadyExists if taken, InvalidArgument if outside the range."""
        self._check(id_)
        try:
            self._bits.set(id_ - self._start)
        except AlreadyExists as e:
            raise AlreadyExists(f"id {id_} is already taken") from e
        return id_

    def get_in_range(self, lo: int, hi: int, *, serial: bool | None = None) -> int:
        """A free id in [lo, hi], a sub-range of this range; Exhausted if none is free."""
        self._check(lo)
        self._check(hi)
        if hi < lo:
            raise InvalidArgument(f"id sub-range [{lo}, {hi}] is empty")
        try:
            return self._start + self._bits.allocate(
                lo - self._start, hi - self._start, serial=serial
            )
        except Exhausted as e:
            raise Exhausted(f"no free id in [{lo}, {hi}]") from e

    def release(self, id_: int) -> bool:
        """Free `id_`. Idempotent: releasing a free id is not an error; returns whether it was taken."""
        self._check(id_)
        return self._bits.unset(id_ - self._start)

    def is_taken(self, id_: int) -> bool:
        self._check(id_)
        return self._bits.is_set(id_ - self._start)

    def to_bytes(self) -> bytes:
        """The bit sequence's serialized form; store `start` next to it."""
        return self._bits.to_bytes()

    @classmethod
    def from_bytes(cls, start: int, data: bytes) -> IdRange:
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise InvalidArgument(f"id range start {start!r} is not a non-negative integer")
        bits = BitSequence.from_bytes(data)
        rng = cls.__new__(cls)
        rng._start, rng._end, rng._bits = start, start + bits.size - 1, bits
        return rng

    def _check(self, id_: int) -> None:
        if not isinstance(id_, int) or isinstance(id_, bool):
            raise InvalidArgument(f"id {id_!r} is not an integer")
        if id_ not in self:
            raise InvalidArgument(f"id {id_} is outside the range [{self._start}, {self._end}]")
