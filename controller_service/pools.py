"""Releasing an IPAM pool by hand (`cnmctl ipam release-pool`): a pool that a
client asked for directly (e.g. with grpcurl against the IPAM service) blocks
`network create --subnet` of the same range until released. Pools that a
network holds are refused: they go with the network."""

from __future__ import annotations

import logging

from controller_service.context import Context
from controller_service.models import PoolUsage
from services.errors import FailedPrecondition, InvalidArgument, NotFound
from services.limits import shown

log = logging.getLogger(__name__)


def _all_pools(ctx: Context) -> list[PoolUsage]:
    pools: list[PoolUsage] = []
    token = ""
    while True:
        page, token = ctx.ipam.list_pools(page_size=1000, page_token=token)
        pools += page
        if not token:
            return pools


def find_pool(ctx: Context, pool: str, address_space: str = "") -> PoolUsage:
    """The pool named by its id ("LocalDefault/10.77.0.0/24") or its subnet
    ("10.77.0.0/24", with `address_space` when the subnet is in several)."""
    if not pool:
        raise InvalidArgument("pool is required", reason="POOL_REQUIRED", field="pool")
    matches = [
        p
        for p in _all_pools(ctx)
        if p.pool_id == pool or (p.pool == pool and address_space in ("", p.address_space))
    ]
    if not matches:
        raise NotFound(f"pool {shown(pool)} not found", reason="POOL_NOT_FOUND", field="pool")
    if len(matches) > 1:
        spaces = ", ".join(sorted(p.address_space for p in matches))
        raise InvalidArgument(
            f"pool {shown(pool)} is in several address spaces ({spaces}): name one",
            reason="POOL_AMBIGUOUS",
            field="address_space",
        )
    return matches[0]


def release_pool(ctx: Context, pool: str, address_space: str = "") -> str:
    """Releases the pool; returns its id. FAILED_PRECONDITION when a network holds it."""
    found = find_pool(ctx, pool, address_space)
    owner = ctx.repo.network(found.owner) if found.owner else None
    if owner is not None:
        raise FailedPrecondition(
            f"pool {found.pool} is in use by network {owner.name}: remove the network instead",
            reason="POOL_IN_USE",
            metadata={"network": owner.id},
        )
    ctx.ipam.release_pool(found.pool_id)
    log.info("released pool %s (owner %r)", found.pool_id, found.owner)
    return found.pool_id
