"""Run-length-encoded bit sequence: the allocation map behind every pool and id range.

This is libnetwork's `bitseq` re-thought for Python and for a Lua twin in Redis
(`bitseq.lua`, driven by `bitseq_redis.py`), which must produce byte-identical results.

Model
-----
A sequence of `size` bits (1 <= size <= 2**64), grouped in 32-bit blocks. Ordinal 0
is the most significant bit of block 0, so ordinal `o` lives in block `o >> 5` at
mask `1 << (31 - (o & 31))`. Bits past `size` in a partial last block are stored as
*set* ("padding"), so they are never free, a full sequence is one all-ones run, and
"is this block full" is one comparison with no special case for the tail.

Runs
----
Equal adjacent blocks form a run. libnetwork stores runs as (value, count); we store
each run by its *first block index* instead (count = next start - this start). The
two are equivalent, but start indices make "which run holds block b" a binary search
over fixed-size records, both here (`bisect`) and in Lua over the serialized string,
so nothing is O(bits) and little is O(runs).

Invariants (checked by `from_bytes`, kept by every mutation):
  * starts[0] == 0, starts strictly increasing, every start < number of blocks;
  * adjacent runs have different values (runs merge as soon as they become equal, so
    fragmentation never accumulates beyond the real pattern of set bits);
  * padding bits of the last block are set.
A consequence used for speed: two *full* runs are never adjacent, so the first run
with a free bit at or after any position is found after looking at <= 3 runs.

Serialized form (all big-endian, version 1)
-------------------------------------------
    header, 26 bytes:  u8 version=1 | u8 flags (bit 0: serial)
                       | u32 last_hi | u32 last_lo      last ordinal = size - 1
                       | u32 cursor_hi | u32 cursor_lo  next ordinal to try in serial mode
                       | u32 used_hi | u32 used_lo      set bits (padding excluded), mod 2**64
    run records, 12 bytes each, ordered by start:
                       | u32 start_hi | u32 start_lo | u32 block value
Every 64-bit quantity is a (hi, lo) pair of u32 words because Lua numbers are
doubles (exact only to 2**53) while ordinals go to 2**64 - 1. `size - 1` is stored
because `size` itself may be 2**64. `used` can only reach 2**64 when a 2**64-bit
sequence is completely full (then it wraps to 0); that state is recognised by its
single all-ones run, so `free_count` is always exact.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterator

from services.errors import AlreadyExists, Exhausted, InvalidArgument

__all__ = [
    "BLOCK_BITS",
    "FULL_BLOCK",
    "MAX_SIZE",
    "BitSequence",
]

BLOCK_BITS = 32
FULL_BLOCK = 0xFFFFFFFF
MAX_SIZE = 1 << 64
VERSION = 1
FLAG_SERIAL = 0x01
_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1

_HEADER = struct.Struct(">BB6I")
_RUN = struct.Struct(">3I")
HEADER_SIZE = _HEADER.size  # 26
RUN_SIZE = _RUN.size  # 12


def _first_zero(value: int, from_bit: int = 0) -> int:
    """Position (0 = MSB) of the first clear bit of `value` at or after `from_bit`, or 32."""
    free = ~value & (_MASK32 >> from_bit)
    return BLOCK_BITS - free.bit_length() if free else BLOCK_BITS


class BitSequence:
    """A bit map of 1..2**64 bits stored as runs of equal 32-bit blocks.

    Mutations raise domain errors (`AlreadyExists`, `Exhausted`, `InvalidArgument`)
    and leave the sequence unchanged when they do.
    """

    __slots__ = ("_size", "_serial", "_cursor", "_used", "_starts", "_values")

    def __init__(self, size: int, *, serial: bool = False) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_SIZE:
            raise InvalidArgument(f"bit sequence size {size!r} is not in [1, 2**64]")
        self._size = size
        self._serial = bool(serial)
        self._cursor = 0
        self._used = 0
        last_block = (size - 1) >> 5
        padding = self._padding_mask()
        if padding and last_block:
            self._starts, self._values = [0, last_block], [0, padding]
        else:
            self._starts, self._values = [0], [padding]

    # --- properties ---------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of usable bits."""
        return self._size

    @property
    def serial(self) -> bool:
        """Default mode of `allocate`: continue after the last bit it handed out."""
        return self._serial

    @property
    def cursor(self) -> int:
        """Where the next serial allocation starts looking (last serial result + 1, wrapped)."""
        return self._cursor

    @property
    def used_count(self) -> int:
        return self._used

    @property
    def free_count(self) -> int:
        """Clear bits; O(1) because `used` is maintained on every change."""
        return self._size - self._used

    @property
    def run_count(self) -> int:
        """Number of runs: the cost driver of every operation and of the serialized form."""
        return len(self._starts)

    def __len__(self) -> int:
        return self._size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BitSequence):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __repr__(self) -> str:
        return (
            f"BitSequence(size={self._size}, used={self._used}, serial={self._serial}, "
            f"cursor={self._cursor}, runs={self.runs()[:8]}{'...' if self.run_count > 8 else ''})"
        )

    def runs(self) -> list[tuple[int, int]]:
        """libnetwork's view: [(block value, block count), ...] in order."""
        ends = [*self._starts[1:], self._block_count()]
        return [(v, e - s) for v, s, e in zip(self._values, self._starts, ends, strict=True)]

    # --- queries ------------------------------------------------------------------------

    def is_set(self, ordinal: int) -> bool:
        self._check_ordinal(ordinal)
        block, mask = ordinal >> 5, 1 << (31 - (ordinal & 31))
        return bool(self._values[self._run_of(block)] & mask)

    def first_free(self, start: int = 0, end: int | None = None) -> int:
        """Lowest clear ordinal in [start, end] (end defaults to the last bit).

        Raises Exhausted when there is none. O(log runs): by the no-adjacent-full-runs
        invariant the answer is in one of the first three runs from `start`.
        """
        start, end = self._check_range(start, end)
        found = self._find(start, end)
        if found is None:
            raise Exhausted(f"no free bit in [{start}, {end}]")
        return found

    def iter_set(self, start: int = 0) -> Iterator[int]:
        """Yield the set ordinals >= `start` in order (padding excluded); lazy.

        Skips to `start` by binary search, then costs O(runs + set bits) visited.
        """
        if start >= self._size:
            return
        self._check_ordinal(start)
        nblocks, first = self._block_count(), start >> 5
        for i in range(self._run_of(first), len(self._starts)):
            value = self._values[i]
            if not value:
                continue
            run_end = self._starts[i + 1] if i + 1 < len(self._starts) else nblocks
            bits = [b for b in range(BLOCK_BITS) if value & (1 << (31 - b))]
            for block in range(max(self._starts[i], first), run_end):
                base = block << 5
                for bit in bits:
                    ordinal = base + bit
                    if ordinal >= self._size:
                        return
                    if ordinal >= start:
                        yield ordinal

    def count_set(self, start: int = 0, end: int | None = None) -> int:
        """Set bits in [start, end] (padding excluded); O(log runs + runs in the range)."""
        start, end = self._check_range(start, end)
        first, last = start >> 5, end >> 5
        nblocks, total = self._block_count(), 0
        for i in range(self._run_of(first), len(self._starts)):
            lo = max(self._starts[i], first)
            if lo > last:
                break
            hi = min((self._starts[i + 1] if i + 1 < len(self._starts) else nblocks) - 1, last)
            total += self._values[i].bit_count() * (hi - lo + 1)
        # Drop the bits of the first block before `start` and of the last block after `end`.
        total -= (self._values[self._run_of(first)] & ~(_MASK32 >> (start & 31))).bit_count()
        total -= (self._values[self._run_of(last)] & (_MASK32 >> ((end & 31) + 1))).bit_count()
        return total

    # --- mutations ----------------------------------------------------------------------

    def set(self, ordinal: int) -> None:
        """Mark `ordinal` taken; AlreadyExists when it already is."""
        self._check_ordinal(ordinal)
        if not self._write(ordinal, True):
            raise AlreadyExists(f"bit {ordinal} is already set")

    def unset(self, ordinal: int) -> bool:
        """Mark `ordinal` free. Idempotent: returns whether it was set."""
        self._check_ordinal(ordinal)
        return self._write(ordinal, False)

    def allocate(
        self, start: int | None = None, end: int | None = None, *, serial: bool | None = None
    ) -> int:
        """Set and return a free ordinal in [start, end] (defaults: the whole sequence).

        Non-serial: the lowest free one. Serial (default: `self.serial`): the first free
        one at or after the cursor, wrapping to `start`; the cursor then moves past it,
        so a just-released bit is not reused until the search wraps (libnetwork's
        `getAvailableFromCurrent`). Raises Exhausted when the range is full.
        """
        lo, hi = self._check_range(0 if start is None else start, end)
        use_serial = self._serial if serial is None else serial
        found = None
        if use_serial and lo < self._cursor <= hi:
            found = self._find(self._cursor, hi)
        if found is None:
            found = self._find(lo, hi)
        if found is None:
            raise Exhausted(f"no free bit in [{lo}, {hi}]")
        self._write(found, True)
        if use_serial:
            self._cursor = (found + 1) % self._size
        return found

    # --- serialization ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The compact form shared with the Lua twin (see module docstring)."""
        last, cursor, used = self._size - 1, self._cursor, self._used & _MASK64
        out = bytearray(HEADER_SIZE + RUN_SIZE * len(self._starts))
        _HEADER.pack_into(
            out, 0, VERSION, FLAG_SERIAL if self._serial else 0,
            last >> 32, last & _MASK32, cursor >> 32, cursor & _MASK32,
            used >> 32, used & _MASK32,
        )  # fmt: skip
        offset = HEADER_SIZE
        for start, value in zip(self._starts, self._values, strict=True):
            _RUN.pack_into(out, offset, start >> 32, start & _MASK32, value)
            offset += RUN_SIZE
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> BitSequence:
        """Parse and fully validate a serialized sequence (O(runs)); InvalidArgument if bad."""
        data = bytes(data)
        if len(data) < HEADER_SIZE + RUN_SIZE or (len(data) - HEADER_SIZE) % RUN_SIZE:
            raise InvalidArgument(f"malformed bit sequence: length {len(data)}")
        version, flags, l_hi, l_lo, c_hi, c_lo, u_hi, u_lo = _HEADER.unpack_from(data)
        if version != VERSION or flags & ~FLAG_SERIAL:
            raise InvalidArgument(f"malformed bit sequence: version {version} flags {flags:#x}")
        seq = cls.__new__(cls)
        seq._size = ((l_hi << 32) | l_lo) + 1
        seq._serial = bool(flags & FLAG_SERIAL)
        seq._cursor = (c_hi << 32) | c_lo
        starts, values = [], []
        for s_hi, s_lo, value in _RUN.iter_unpack(data[HEADER_SIZE:]):
            starts.append((s_hi << 32) | s_lo)
            values.append(value)
        seq._starts, seq._values = starts, values
        seq._used = seq._count_used()
        seq._validate(used_field=(u_hi << 32) | u_lo)
        return seq

    def copy(self) -> BitSequence:
        other = BitSequence.__new__(BitSequence)
        other._size, other._serial, other._cursor, other._used = (
            self._size, self._serial, self._cursor, self._used,
        )  # fmt: skip
        other._starts, other._values = list(self._starts), list(self._values)
        return other

    # --- internals ----------------------------------------------------------------------

    def _block_count(self) -> int:
        return ((self._size - 1) >> 5) + 1

    def _padding_mask(self) -> int:
        """Set bits standing for the positions past `size` in the last block."""
        return (1 << (31 - ((self._size - 1) & 31))) - 1

    def _run_of(self, block: int) -> int:
        return bisect_right(self._starts, block) - 1

    def _check_ordinal(self, ordinal: int) -> None:
        if not isinstance(ordinal, int) or isinstance(ordinal, bool):
            raise InvalidArgument(f"ordinal {ordinal!r} is not an integer")
        if not 0 <= ordinal < self._size:
            raise InvalidArgument(f"ordinal {ordinal} is outside [0, {self._size - 1}]")

    def _check_range(self, start: int, end: int | None) -> tuple[int, int]:
        end = self._size - 1 if end is None else end
        self._check_ordinal(start)
        self._check_ordinal(end)
        if start > end:
            raise InvalidArgument(f"range [{start}, {end}] is empty")
        return start, end

    def _find(self, start: int, end: int) -> int | None:
        """Lowest clear ordinal in [start, end] or None. Mirrored by `find` in bitseq.lua."""
        starts, values = self._starts, self._values
        nruns, nblocks = len(starts), self._block_count()
        block, bit = start >> 5, start & 31
        i = self._run_of(block)
        while True:
            value = values[i]
            if value != FULL_BLOCK:
                pos = _first_zero(value, bit)
                if pos == BLOCK_BITS:
                    # Nothing left in the first, partial block; the run's next block (same
                    # value, hence not full) has one, else move on to the next run.
                    block += 1
                    run_end = starts[i + 1] if i + 1 < nruns else nblocks
                    pos = _first_zero(value) if block < run_end else BLOCK_BITS
                if pos < BLOCK_BITS:
                    found = (block << 5) | pos
                    return found if found <= end else None
            i += 1
            if i >= nruns:
                return None
            block, bit = starts[i], 0
            if block << 5 > end:
                return None

    def _write(self, ordinal: int, on: bool) -> bool:
        """Set or clear one bit, splitting and merging runs; False if it already had that value."""
        block, mask = ordinal >> 5, 1 << (31 - (ordinal & 31))
        starts, values = self._starts, self._values
        i = self._run_of(block)
        old = values[i]
        if bool(old & mask) == on:
            return False
        new = old | mask if on else old & ~mask
        run_start = starts[i]
        run_end = starts[i + 1] if i + 1 < len(starts) else self._block_count()
        # Replace run i by [run_start, block) old | [block] new | [block+1, run_end) old,
        # dropping empty pieces and merging `new` into an equal neighbour run.
        rec_starts, rec_values = [], []
        if block > run_start:
            rec_starts.append(run_start)
            rec_values.append(old)
        if not (block == run_start and i > 0 and values[i - 1] == new):
            rec_starts.append(block)
            rec_values.append(new)
        replace_end = i + 1
        if block + 1 < run_end:
            rec_starts.append(block + 1)
            rec_values.append(old)
        elif i + 1 < len(starts) and values[i + 1] == new:
            replace_end = i + 2  # the next run continues `new`: drop its boundary
        starts[i:replace_end] = rec_starts
        values[i:replace_end] = rec_values
        self._used += 1 if on else -1
        return True

    def _count_used(self) -> int:
        ends = [*self._starts[1:], self._block_count()]
        ones = sum(
            v.bit_count() * (e - s)
            for v, s, e in zip(self._values, self._starts, ends, strict=True)
        )
        return ones - self._padding_mask().bit_count()

    def _validate(self, used_field: int) -> None:
        starts, values, nblocks = self._starts, self._values, self._block_count()
        problem = None
        if starts[0] != 0:
            problem = "first run does not start at block 0"
        elif any(b <= a for a, b in zip(starts, starts[1:], strict=False)) or starts[-1] >= nblocks:
            problem = "run starts are not increasing within the sequence"
        elif any(a == b for a, b in zip(values, values[1:], strict=False)):
            problem = "adjacent runs are equal (not merged)"
        elif values[-1] & self._padding_mask() != self._padding_mask():
            problem = "padding bits past the size are clear"
        elif self._cursor >= self._size:
            problem = f"cursor {self._cursor} is past the end"
        elif used_field != self._used & _MASK64:
            problem = f"used count {used_field} does not match the runs ({self._used})"
        if problem:
            raise InvalidArgument(f"malformed bit sequence: {problem}")
