"""GarbageCollect: CNI's GC verb. Everything attached to sandboxes outside the
valid set is released: endpoints (addresses, ports, links, rules with them)
and the sandboxes themselves."""

from __future__ import annotations

import logging

from controller_service.context import Context
from controller_service.models import GcResult, State
from controller_service.sandboxes import Sandboxes
from services.errors import CnmError, InvalidArgument, MultiError
from services.ids import is_full_id

log = logging.getLogger(__name__)


def garbage_collect(ctx: Context, sandboxes: Sandboxes, valid_ids: list[str]) -> GcResult:
    """Deletes every sandbox not listed with every endpoint joined to it.
    Sandboxes being created right now are spared (they are not stale, just
    young). Best effort: failures are raised together after everything else
    was done; their intents are left to the reconciler."""
    for sb_id in valid_ids:
        if not is_full_id(sb_id):
            raise InvalidArgument(
                f"invalid sandbox id {sb_id!r} in valid_sandbox_ids: expected 64 hex characters",
                reason="INVALID_ID",
            )
    valid = set(valid_ids)
    removed_sb: list[str] = []
    removed_ep: list[str] = []
    errors: list[Exception] = []
    for sb in ctx.repo.all_sandboxes():
        if sb.id in valid or sb.state is State.CREATING:
            continue
        try:
            if sb.state is State.DELETING:
                # Someone's unfinished delete: finish it, purging like GC does.
                sb = ctx.transition(sb, purge_endpoints=True, **ctx.intent())
                removed_ep += sandboxes.finish_delete(sb)
            else:
                removed_ep += sandboxes.delete_sandbox(sb, purge_endpoints=True)
            removed_sb.append(sb.id)
        except CnmError as e:
            errors.append(e)
    log.info(
        "garbage collection removed %d sandboxes, %d endpoints", len(removed_sb), len(removed_ep)
    )
    if errors:
        raise errors[0] if len(errors) == 1 else MultiError(errors)
    return GcResult(removed_sandbox_ids=tuple(removed_sb), removed_endpoint_ids=tuple(removed_ep))
