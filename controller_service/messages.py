"""User-facing error messages: what a Docker user reads, not internal ids.

Errors from IPAM and the driver services name objects by their 64-hex ids;
the controller answers its callers with the object's name instead (12-char
id when it has none or is gone), once, on the way out.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from controller_service.repository import Repository
from services.errors import CnmError

_FULL_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def humanize(message: str, name_of: Callable[[str], str | None]) -> str:
    """Every 64-hex id in `message` replaced by its object's name, else its 12-char id."""
    return _FULL_ID.sub(lambda m: name_of(m.group()) or m.group()[:12], message)


def name_lookup(repo: Repository) -> Callable[[str], str | None]:
    def name_of(obj_id: str) -> str | None:
        for get in (repo.network, repo.sandbox, repo.endpoint):
            try:
                obj = get(obj_id)
            except CnmError:
                return None  # the store is down: the short id will do
            if obj is not None and obj.name:
                return obj.name
        return None

    return name_of


def polish(err: CnmError, repo: Repository) -> CnmError:
    """`err` with its message humanized (in place; metadata keeps full ids)."""
    text = humanize(err.message, name_lookup(repo))
    if text != err.message:
        err.message = text
        err.args = (text,)
    return err
