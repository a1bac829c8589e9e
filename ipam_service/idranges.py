"""Named integer id ranges in Redis (VXLAN VNIs and the like), on the bit sequence.

Keys (all through Store.key):
  ipam:idrange:{<name>}                  hash: start, end, gen
  ipam:idrange:{<name>}:<gen>:bits       bit sequence; bit i is id start + i
  ipam:idrange:{<name>}:<gen>:owners     hash: decimal bit -> owner of that id

`gen` is a fresh random tag per CreateRange: a caller that read the bounds of a
range just before it was deleted and re-created with other bounds finds its
bit sequence gone (NOT_FOUND, re-read once) instead of allocating with the old
offset from the new range's bits. Each id operation is then one EVALSHA.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import cast

import redis

from services.errors import AlreadyExists, Exhausted, InvalidArgument, NotFound
from services.ids import new_id
from services.limits import ID_RANGE_MAX, shown
from services.limits import REASON as LIMIT_REASON
from services.store import Store

from .bitseq_redis import RedisBitSequence
from .idm import IdRange

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_MAX_OWNER = 256


@dataclass(frozen=True)
class RangeBounds:
    name: str
    start: int
    end: int
    gen: str


def validate_range_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise InvalidArgument(
            f"invalid id range name {shown(name)}: use 1-128 characters of [A-Za-z0-9_.:-], "
            "starting with a letter or digit"
        )
    return name


class IdRanges:
    """CreateRange / GetId / ReleaseId / DeleteRange over Redis; domain errors only."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _meta_key(self, name: str) -> str:
        return self.store.key("ipam", "idrange", f"{{{name}}}")

    def _bits(self, bounds: RangeBounds) -> RedisBitSequence:
        base = f"{self._meta_key(bounds.name)}:{bounds.gen}"
        return RedisBitSequence(self.store.raw, f"{base}:bits", owners_key=f"{base}:owners")

    def _bounds(self, name: str) -> RangeBounds:
        meta = cast("dict[str, str]", self.store.client.hgetall(self._meta_key(name)))
        if not meta:
            raise NotFound(f"no such id range {name!r}", reason="RANGE_NOT_FOUND")
        return RangeBounds(name, int(meta["start"]), int(meta["end"]), meta["gen"])

    def create_range(self, name: str, start: int, end: int) -> None:
        """Idempotent for equal bounds; AlreadyExists when the name has other bounds."""
        validate_range_name(name)
        if end >= start and end - start + 1 > ID_RANGE_MAX:
            raise InvalidArgument(
                f"id range [{start}, {end}] holds {end - start + 1} ids, at most {ID_RANGE_MAX}",
                reason=LIMIT_REASON,
                metadata={"field": "end", "limit": str(ID_RANGE_MAX)},
            )
        fresh = IdRange(start, end)  # validates the bounds (InvalidArgument)
        meta_key = self._meta_key(name)

        def create(pipe: redis.client.Pipeline) -> None:
            meta = cast("dict[str, str]", pipe.hgetall(meta_key))  # decoded replies
            if meta:
                if (int(meta["start"]), int(meta["end"])) != (start, end):
                    raise AlreadyExists(
                        f"id range {name!r} already exists as [{meta['start']}, {meta['end']}]"
                    )
                return
            gen = new_id()[:16]
            base = f"{meta_key}:{gen}"
            pipe.multi()
            pipe.hset(meta_key, mapping={"start": str(start), "end": str(end), "gen": gen})
            pipe.set(f"{base}:bits", fresh.to_bytes())

        self.store.transaction(create, meta_key)

    def get_id(
        self, name: str, *, id_: int | None, lo: int | None, hi: int | None, owner: str
    ) -> int:
        validate_range_name(name)
        if len(owner) > _MAX_OWNER:
            raise InvalidArgument(f"owner is longer than {_MAX_OWNER} characters")
        if (lo is None) != (hi is None):
            raise InvalidArgument("give both range_start and range_end, or neither")
        if id_ is not None and lo is not None:
            raise InvalidArgument("give an id or a range_start/range_end, not both")
        for attempt in (1, 2):
            bounds = self._bounds(name)
            try:
                return self._get(bounds, id_, lo, hi, owner)
            except NotFound:
                if attempt == 2:
                    raise NotFound(f"no such id range {name!r}", reason="RANGE_NOT_FOUND") from None
        raise AssertionError("unreachable")

    def _get(
        self, b: RangeBounds, id_: int | None, lo: int | None, hi: int | None, owner: str
    ) -> int:
        bits = self._bits(b)
        if id_ is not None:
            self._check(b, id_, "id")
            try:
                bits.set(id_ - b.start, owner=owner)
            except AlreadyExists:
                raise AlreadyExists(f"id {id_} of range {b.name!r} is already taken") from None
            return id_
        if lo is not None and hi is not None:
            self._check(b, lo, "range_start")
            self._check(b, hi, "range_end")
            if lo > hi:
                raise InvalidArgument(f"range_start {lo} is above range_end {hi}")
            first, last = lo - b.start, hi - b.start
        else:
            first, last = 0, b.end - b.start
        try:
            return b.start + bits.allocate(first, last, serial=False, owner=owner)
        except Exhausted:
            raise Exhausted(
                f"no free id in [{first + b.start}, {last + b.start}] of range {b.name!r}",
                reason="RANGE_FULL",
            ) from None

    def release_id(self, name: str, id_: int) -> None:
        """Idempotent; NotFound only when the range does not exist."""
        validate_range_name(name)
        bounds = self._bounds(name)
        self._check(bounds, id_, "id")
        try:
            self._bits(bounds).unset(id_ - bounds.start)
        except NotFound:
            raise NotFound(f"no such id range {name!r}", reason="RANGE_NOT_FOUND") from None

    def delete_range(self, name: str) -> None:
        """Idempotent: deleting a missing range succeeds."""
        validate_range_name(name)
        meta_key = self._meta_key(name)

        def delete(pipe: redis.client.Pipeline) -> None:
            gen = cast("str | None", pipe.hget(meta_key, "gen"))  # decoded replies
            pipe.multi()
            if gen is not None:
                pipe.delete(meta_key, f"{meta_key}:{gen}:bits", f"{meta_key}:{gen}:owners")

        self.store.transaction(delete, meta_key)

    @staticmethod
    def _check(b: RangeBounds, value: int, what: str) -> None:
        if not b.start <= value <= b.end:
            raise InvalidArgument(
                f"{what} {value} is outside id range {b.name!r} [{b.start}, {b.end}]"
            )
