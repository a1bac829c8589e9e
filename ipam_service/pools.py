"""Pools and addresses in Redis: the glue between allocator.py's policy and the store.

Keys (all through Store.key; `{pool_id}` is a hash tag so the two keys one Lua
call touches, bits and owners, share a Redis Cluster slot; the pool reservation
transaction spans several slots, so cnm needs a single Redis primary, as DESIGN.md
assumes):
  ipam:pools                      sorted set (score 0) of every pool id, for ListPools
  ipam:space:<space>:pools        sorted set of the pool ids of one space (overlap checks)
  ipam:pool:{<pool_id>}           hash: owner, request_id, created, data (JSON)
  ipam:pool:{<pool_id>}:bits      the pool's bit sequence (bitseq.py's serialized form)
  ipam:pool:{<pool_id>}:owners    hash: decimal ordinal -> owner of that address
  ipam:req:<request_id>           JSON of the first RequestPool result (24 h), for retries

Atomicity: a pool is reserved by one WATCH/MULTI transaction that watches its
space's index, so the overlap check, the choice of the next predefined pool and
every write (index, metadata, bit sequence with network/broadcast/aux bits set,
aux owners, request record) commit together or not at all; two replicas racing
for "the next predefined pool" make one of them retry and see the other's pool.
An address is one EVALSHA of bitseq.lua (bit and owner together). No state is
kept in the process.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any, cast

import redis
from redis.typing import EncodableT

from services.errors import AlreadyExists, Exhausted, InvalidArgument, NotFound
from services.paging import decode_token, encode_token, page_size
from services.store import Store

from .allocator import (
    AUX_ADDRESS_PREFIX,
    AddressRequest,
    Allocation,
    PoolGrant,
    PoolId,
    PoolInfo,
    PoolRequest,
    parse_pool_id,
)
from .bitseq import BitSequence
from .bitseq_redis import RedisBitSequence
from .spaces import (
    check_declared,
    find_overlap,
    first_free_subnet,
    predefined_bases,
    validate_space,
)

log = logging.getLogger(__name__)

REQUEST_TTL = 24 * 3600
_ALL_SPACES = "*"


class Pools:
    """Every IPAM operation on pools and addresses; raises domain errors only."""

    def __init__(self, store: Store, address_spaces: Iterable[str] = ()) -> None:
        self.store = store
        # Spaces besides the two defaults that pools may be requested in.
        self.address_spaces = frozenset(address_spaces)
        self.all_key = store.key("ipam", "pools")

    # --- keys -----------------------------------------------------------------------------

    def space_key(self, space: str) -> str:
        return self.store.key("ipam", "space", space, "pools")

    def meta_key(self, pid: PoolId | str) -> str:
        return self.store.key("ipam", "pool", f"{{{pid}}}")

    def bits(self, pid: PoolId) -> RedisBitSequence:
        bits_key = f"{self.meta_key(pid)}:bits"
        return RedisBitSequence(self.store.raw, bits_key, owners_key=self.owners_key(pid))

    def owners_key(self, pid: PoolId) -> str:
        return f"{self.meta_key(pid)}:owners"

    def request_key(self, request_id: str) -> str:
        return self.store.key("ipam", "req", request_id)

    # --- pools ----------------------------------------------------------------------------

    def request_pool(self, req: PoolRequest) -> PoolGrant:
        """Reserve exactly `req.subnet`, or the first free predefined pool of the space."""
        check_declared(req.space, self.address_spaces)
        space_key = self.space_key(req.space)
        req_key = self.request_key(req.request_id) if req.request_id else None

        def reserve(pipe: redis.client.Pipeline) -> PoolGrant:
            if req_key is not None:
                prior = cast("str | None", pipe.get(req_key))  # decoded replies
                if prior is not None:
                    return self._replay(req, prior)
            taken = [parse_pool_id(p) for p in cast("list[str]", pipe.zrange(space_key, 0, -1))]
            subnet = req.subnet
            if subnet is not None:
                clash = find_overlap(subnet, [p.subnet for p in taken])
                if clash is not None:
                    holder = next(p for p in taken if p.subnet == clash)
                    raise AlreadyExists(
                        f"pool {subnet} overlaps pool {str(holder)!r} of address space "
                        f"{req.space!r}",
                        reason="POOL_OVERLAP",
                        metadata={"pool_id": str(holder)},
                    )
            else:
                bases = predefined_bases(req.space, req.v6)
                if not bases:
                    raise InvalidArgument(
                        f"address space {req.space!r} has no predefined "
                        f"{'IPv6' if req.v6 else 'IPv4'} pools: give a pool"
                    )
                subnet = first_free_subnet(bases, [p.subnet for p in taken])
                if subnet is None:
                    raise Exhausted(
                        f"no predefined {'IPv6' if req.v6 else 'IPv4'} pool is left in "
                        f"address space {req.space!r}",
                        reason="POOLS_EXHAUSTED",
                        metadata={"address_space": req.space},
                    )
            pid = PoolId(req.space, subnet, req.sub_pool)
            grant = self._write_pool(pipe, pid, req)
            if req_key is not None:
                record = {
                    "pool_id": str(pid),
                    "data": dict(grant.data),
                    "fingerprint": req.fingerprint,
                }
                pipe.set(req_key, json.dumps(record), ex=REQUEST_TTL)
            return grant

        watch = [space_key] + ([req_key] if req_key else [])
        grant = self.store.transaction(reserve, *watch)
        log.info("pool %s reserved for %r", grant.pool_id, req.owner)
        return grant

    def _replay(self, req: PoolRequest, prior: str) -> PoolGrant:
        record = json.loads(prior)
        if record.get("fingerprint") != req.fingerprint:
            raise InvalidArgument(
                f"request_id {req.request_id!r} was already used for a different request"
            )
        return PoolGrant(parse_pool_id(record["pool_id"]), record.get("data") or {})

    def _write_pool(self, pipe: redis.client.Pipeline, pid: PoolId, req: PoolRequest) -> PoolGrant:
        """Queue (after MULTI) every write that makes `pid` exist."""
        seq = BitSequence(pid.size, serial=True)
        for ordinal in pid.reserved:
            seq.set(ordinal)
        aux_owners: dict[EncodableT, EncodableT] = {}
        data: dict[str, str] = {}
        for name, address in req.aux:
            ordinal = pid.ordinal_of(address)
            seq.set(ordinal)
            aux_owners[str(ordinal)] = f"aux:{name}"
            data[f"{AUX_ADDRESS_PREFIX}{name}"] = pid.cidr_of(ordinal)
        meta = self.meta_key(pid)
        pipe.multi()
        pipe.zadd(self.space_key(pid.space), {str(pid): 0})
        pipe.zadd(self.all_key, {str(pid): 0})
        pipe.delete(f"{meta}:owners")
        pipe.hset(
            meta,
            mapping={
                "owner": req.owner,
                "request_id": req.request_id,
                "created": repr(time.time()),
                "data": json.dumps(data),
            },
        )
        pipe.set(f"{meta}:bits", seq.to_bytes())
        if aux_owners:
            pipe.hset(f"{meta}:owners", mapping=aux_owners)
        return PoolGrant(pid, data)

    def release_pool(self, pool_id: str) -> None:
        """Drop the pool and every address in it; NotFound when it does not exist."""
        pid = parse_pool_id(pool_id)
        meta = self.meta_key(pid)

        def drop(pipe: redis.client.Pipeline) -> None:
            request_id = cast("str | None", pipe.hget(meta, "request_id"))  # decoded replies
            if request_id is None:
                raise NotFound(f"no such pool {pool_id!r}", reason="POOL_NOT_FOUND")
            pipe.multi()
            pipe.zrem(self.space_key(pid.space), str(pid))
            pipe.zrem(self.all_key, str(pid))
            pipe.delete(meta, f"{meta}:bits", f"{meta}:owners")
            if request_id:
                # A retry of the original request must not resurrect a released pool id.
                pipe.delete(self.request_key(request_id))

        self.store.transaction(drop, meta)
        log.info("pool %s released", pid)

    def get_pool(self, pool_id: str) -> PoolInfo:
        pid = parse_pool_id(pool_id)
        owner = cast("str | None", self.store.client.hget(self.meta_key(pid), "owner"))
        if owner is None:
            raise NotFound(f"no such pool {pool_id!r}", reason="POOL_NOT_FOUND")
        return self._usage(pid, owner)

    def _usage(self, pid: PoolId, owner: str) -> PoolInfo:
        bits = self.bits(pid)
        try:
            if pid.sub_pool is None:
                info = bits.info()
                used, free = info.used - len(pid.reserved), info.free
            else:
                seq = bits.load()
                lo, hi = pid.dynamic_range
                used = seq.used_count - len(pid.reserved)
                free = hi - lo + 1 - seq.count_set(lo, hi)
        except NotFound:
            raise NotFound(f"no such pool {str(pid)!r}", reason="POOL_NOT_FOUND") from None
        return PoolInfo(pid, owner, used, free)

    def list_pools(self, space: str, size: int, token: str) -> tuple[list[PoolInfo], str]:
        """A page of pools (of one space when `space`), in pool-id order, with usage."""
        limit = page_size(size, 100, 1000)
        if space:
            validate_space(space)
        key = self.space_key(space) if space else self.all_key
        start = "-"
        if token:
            token_space, last = decode_token(token, 2)
            if token_space != (space or _ALL_SPACES):
                raise InvalidArgument(f"invalid page_token {token!r}: made for another listing")
            start = "(" + last
        ids = cast(
            "list[str]", self.store.client.zrangebylex(key, start, "+", start=0, num=limit + 1)
        )
        page, more = ids[:limit], len(ids) > limit
        with self.store.client.pipeline(transaction=False) as pipe:
            for pool_id in page:
                pipe.hget(self.meta_key(pool_id), "owner")
            owners = pipe.execute()
        pools = []
        for pool_id, owner in zip(page, owners, strict=True):
            if owner is None:
                continue  # released since the index was read
            try:
                pools.append(self._usage(parse_pool_id(pool_id), owner))
            except NotFound:
                continue
        next_token = encode_token(space or _ALL_SPACES, page[-1]) if more else ""
        return pools, next_token

    # --- addresses ------------------------------------------------------------------------

    def request_address(self, req: AddressRequest) -> str:
        """Allocate and return the address in CIDR form."""
        pid = req.pool_id
        bits = self.bits(pid)
        try:
            if req.ordinal is not None:
                ordinal = req.ordinal
                try:
                    bits.set(ordinal, owner=req.owner)
                except AlreadyExists:
                    holder = bits.owner(ordinal)
                    raise AlreadyExists(
                        f"address {pid.address_of(ordinal)} of pool {str(pid)!r} is already "
                        f"allocated{f' to {holder!r}' if holder else ''}",
                        reason="ADDRESS_IN_USE",
                    ) from None
            else:
                lo, hi = pid.dynamic_range
                try:
                    ordinal = bits.allocate(lo, hi, serial=True, owner=req.owner)
                except Exhausted:
                    where = f"sub-pool {pid.sub_pool} of " if pid.sub_pool else ""
                    raise Exhausted(
                        f"no free address left in {where}pool {str(pid)!r}",
                        reason="POOL_FULL",
                        metadata={"pool_id": str(pid)},
                    ) from None
        except NotFound:
            raise NotFound(f"no such pool {str(pid)!r}", reason="POOL_NOT_FOUND") from None
        return pid.cidr_of(ordinal)

    def release_address(self, pool_id: str, address: str) -> None:
        """Free an address; idempotent. NotFound only when the pool does not exist."""
        pid = parse_pool_id(pool_id)
        ordinal = pid.check_address_arg("address", address)
        try:
            self.bits(pid).unset(ordinal)
        except NotFound:
            raise NotFound(f"no such pool {pool_id!r}", reason="POOL_NOT_FOUND") from None

    def list_allocations(self, pool_id: str, size: int, token: str) -> tuple[list[Allocation], str]:
        """A page of allocated addresses (reserved ones excluded) in address order."""
        pid = parse_pool_id(pool_id)
        limit = page_size(size, 1000, 10000)
        start = 0
        if token:
            token_pool, after = decode_token(token, 2)
            if token_pool != str(pid) or not after.isdigit():
                raise InvalidArgument(f"invalid page_token {token!r}: made for another listing")
            start = int(after)
        bits = self.bits(pid)
        try:
            seq = bits.load()
        except NotFound:
            raise NotFound(f"no such pool {pool_id!r}", reason="POOL_NOT_FOUND") from None
        ordinals: list[int] = []
        reserved = set(pid.reserved)
        for ordinal in seq.iter_set(start):
            if ordinal in reserved:
                continue
            ordinals.append(ordinal)
            if len(ordinals) > limit:
                break
        page, more = ordinals[:limit], len(ordinals) > limit
        owners: list[Any] = (
            self.store.client.hmget(self.owners_key(pid), [str(o) for o in page]) if page else []
        )
        allocations = [
            Allocation(pid.address_of(o), owner or "")
            for o, owner in zip(page, owners, strict=True)
        ]
        next_token = encode_token(str(pid), str(ordinals[limit])) if more else ""
        return allocations, next_token
