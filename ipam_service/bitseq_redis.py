"""A bit sequence stored in one Redis key, changed only by one Lua script call at a time.

Several stateless IPAM replicas share pools: each allocation is one EVALSHA of
`bitseq.lua`, which finds and sets the bit and (optionally) records the owner, all
inside Redis's single-threaded script execution. No WATCH/retry loop, no lost
update, no double allocation.

Cost: the script never reads the whole value. It binary-searches the fixed-size run
records with GETRANGE (O(log runs) small reads) and writes back with SETRANGE when
the number of runs is unchanged (most allocations: a block changes value). When runs
are added it rewrites from the change to the end; when runs merge away it must SET
the whole value, since a Redis string cannot shrink in place. Those writes are what
Redis replicates and appends to its AOF, so they cost O(bytes after the change).

Key layout (the caller picks the names; give them one hash tag for Redis Cluster):
  <key>         string: `BitSequence.to_bytes()` (format in bitseq.py's docstring)
  <owners_key>  optional hash: field = decimal ordinal, value = owner (an endpoint id
                or label). `allocate(owner=...)` and `set(owner=...)` write it in the
                same step as the bit; `unset` deletes it in the same step, and with
                `if_owner=` only releases a bit still held by that owner.

Ordinals cross to Lua as two decimal words (hi, lo) of 32 bits each and come back
the same way, because Lua numbers are doubles and ordinals reach 2**64 - 1.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from services.errors import (
    AlreadyExists,
    CnmError,
    Exhausted,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
)

from .bitseq import MAX_SIZE, BitSequence

__all__ = ["BitSequenceInfo", "RedisBitSequence"]

_MASK32 = 0xFFFFFFFF
_SOURCE = resources.files(__package__).joinpath("bitseq.lua").read_text()
_SCRIPTS: weakref.WeakKeyDictionary[Any, Script] = weakref.WeakKeyDictionary()
_ERRORS: dict[str, type[CnmError]] = {
    "CNM_NOTFOUND": NotFound,
    "CNM_EXISTS": AlreadyExists,
    "CNM_EXHAUSTED": Exhausted,
    "CNM_INVALID": InvalidArgument,
}


@dataclass(frozen=True)
class BitSequenceInfo:
    """Counters read in one O(1) script call (no parsing of the runs)."""

    size: int
    used: int
    serial: bool
    cursor: int
    runs: int

    @property
    def free(self) -> int:
        return self.size - self.used


def _script(client: Any) -> Script:
    """One registered Script per client, so its SHA1 is computed once, not per call."""
    try:
        script = _SCRIPTS.get(client)
    except TypeError:  # not weak-referenceable (some wrappers): register each time
        return client.register_script(_SOURCE)
    if script is None:
        script = _SCRIPTS[client] = client.register_script(_SOURCE)
    return script


def _words(ordinal: int) -> tuple[int, int]:
    if not isinstance(ordinal, int) or isinstance(ordinal, bool):
        raise InvalidArgument(f"ordinal {ordinal!r} is not an integer")
    if not 0 <= ordinal < MAX_SIZE:
        raise InvalidArgument(f"ordinal {ordinal} is outside [0, 2**64 - 1]")
    return ordinal >> 32, ordinal & _MASK32


class RedisBitSequence:
    """The operations of `BitSequence` on a key in Redis, each one EVALSHA round trip."""

    def __init__(self, client: redis.Redis, key: str, *, owners_key: str | None = None) -> None:
        self.client = client
        self.key = key
        self.owners_key = owners_key
        self._script = _script(client)

    def __repr__(self) -> str:
        return f"RedisBitSequence(key={self.key!r}, owners_key={self.owners_key!r})"

    # --- lifecycle ----------------------------------------------------------------------

    def create(
        self, size: int, *, serial: bool = False, reserved: Iterable[int] = (),
        exist_ok: bool = False,
    ) -> bool:  # fmt: skip
        """Store a new sequence of `size` bits with `reserved` ordinals already set.

        Reserved bits (a network or broadcast address) are set before the single SET NX,
        so no other replica can ever see the pool without them. AlreadyExists if the key
        exists, unless `exist_ok` (then nothing is changed); returns whether it created.
        """
        seq = BitSequence(size, serial=serial)
        for ordinal in reserved:
            if not seq.is_set(ordinal):
                seq.set(ordinal)
        return self.create_from(seq, exist_ok=exist_ok)

    def create_from(self, seq: BitSequence, *, exist_ok: bool = False) -> bool:
        """Store `seq` if the key does not exist yet (SET NX); see `create`."""
        created = self._redis(self.client.set, self.key, seq.to_bytes(), nx=True)
        if not created and not exist_ok:
            raise AlreadyExists(f"bit sequence {self.key!r} already exists")
        return bool(created)

    def delete(self) -> None:
        """Remove the sequence and its owners hash. Idempotent."""
        keys = [self.key] + ([self.owners_key] if self.owners_key else [])
        self._redis(self.client.delete, *keys)

    def load(self) -> BitSequence:
        """The whole sequence, parsed and validated; NotFound if the key is missing."""
        data = self._redis(self.client.get, self.key)
        if data is None:
            raise NotFound(f"bit sequence {self.key!r} does not exist")
        if isinstance(data, str):
            raise Internal("RedisBitSequence.load needs a client with decode_responses=False")
        return BitSequence.from_bytes(data)

    # --- allocation ---------------------------------------------------------------------

    def allocate(
        self, start: int | None = None, end: int | None = None, *,
        serial: bool | None = None, owner: str | None = None,
    ) -> int:  # fmt: skip
        """Atomically set and return a free ordinal in [start, end]; see BitSequence.allocate.

        With `owner`, the owners hash records it under the ordinal in the same step.
        Raises Exhausted, NotFound (no such key) or InvalidArgument.
        """
        s_words = ("", "") if start is None else _words(start)
        e_words = ("", "") if end is None else _words(end)
        if start is not None and end is not None and start > end:
            raise InvalidArgument(f"range [{start}, {end}] is empty")
        mode = "" if serial is None else ("1" if serial else "0")
        reply = self._eval("alloc", *s_words, *e_words, mode, owner=owner)
        return (int(reply[0]) << 32) | int(reply[1])

    def set(self, ordinal: int, *, owner: str | None = None) -> None:
        """Atomically set `ordinal` (and record `owner`); AlreadyExists if it is set."""
        hi, lo = _words(ordinal)
        self._eval("set", hi, lo, str(ordinal), owner=owner)

    def unset(self, ordinal: int, *, if_owner: str | None = None) -> bool:
        """Atomically clear `ordinal` and forget its owner. Idempotent.

        With `if_owner`, only if the owners hash still names that owner: a retried
        release from a stale holder cannot free a bit someone else got since.
        Returns whether the bit was released.
        """
        hi, lo = _words(ordinal)
        if if_owner is not None and self.owners_key is None:
            raise InvalidArgument("unset(if_owner=...) needs an owners_key")
        keys = [self.key] + ([self.owners_key] if self.owners_key else [])
        conditional = ("1", if_owner) if if_owner is not None else ("0", "")
        return bool(self._run(keys, ["unset", hi, lo, str(ordinal), *conditional]))

    # --- queries ------------------------------------------------------------------------

    def is_set(self, ordinal: int) -> bool:
        hi, lo = _words(ordinal)
        return bool(self._run([self.key], ["isset", hi, lo]))

    def info(self) -> BitSequenceInfo:
        flags, l_hi, l_lo, c_hi, c_lo, u_hi, u_lo, runs, full = (
            int(x) for x in self._run([self.key], ["info"])
        )
        size = ((l_hi << 32) | l_lo) + 1
        # `used` is stored mod 2**64: a full 2**64-bit sequence reads 0, seen by its one run.
        used = size if full else (u_hi << 32) | u_lo
        return BitSequenceInfo(size, used, bool(flags & 1), (c_hi << 32) | c_lo, runs)

    def free_count(self) -> int:
        return self.info().free

    def used_count(self) -> int:
        return self.info().used

    def owner(self, ordinal: int) -> str | None:
        """The recorded owner of `ordinal`, if any."""
        if self.owners_key is None:
            return None
        value = self._redis(self.client.hget, self.owners_key, str(ordinal))
        return value.decode() if isinstance(value, bytes) else value

    def owners(self) -> dict[int, str]:
        """Every recorded ordinal -> owner (HGETALL: for listing and leak collection)."""
        if self.owners_key is None:
            return {}
        raw = self._redis(self.client.hgetall, self.owners_key)
        return {int(k): v.decode() if isinstance(v, bytes) else v for k, v in raw.items()}

    # --- plumbing -----------------------------------------------------------------------

    def _eval(self, op: str, *args: Any, owner: str | None) -> Any:
        if owner is not None and self.owners_key is None:
            raise InvalidArgument(f"{op} with an owner needs an owners_key")
        if owner is None:
            return self._run([self.key], [op, *args])
        return self._run([self.key, self.owners_key], [op, *args, owner])

    def _run(self, keys: list[Any], args: list[Any]) -> Any:
        return self._redis(self._script, keys, args, self.client)

    def _redis(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call Redis, turning script errors and lost connections into domain errors."""
        try:
            return fn(*args, **kwargs)
        except redis.exceptions.ResponseError as e:
            code, _, message = str(e).partition(" ")
            error = _ERRORS.get(code)
            if error is None:
                raise
            raise error(message) from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            raise Unavailable(f"redis: {e}") from e
