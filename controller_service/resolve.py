"""Finding an object from what a user typed, in Docker's order:
full id, then exact name, then unique id prefix."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from services.errors import InvalidArgument, NotFound
from services.ids import is_full_id

_HEX = re.compile(r"^[0-9a-f]+$")


def resolve(
    kind: str,
    text: str,
    *,
    exists: Callable[[str], bool],
    by_name: Callable[[str], str | None],
    by_prefix: Callable[[str], Sequence[str]],
) -> str:
    """The id `text` designates. NOT_FOUND naming it when nothing matches;
    INVALID_ARGUMENT when it is empty or a prefix matches several objects.

    `by_prefix` may return at most two ids: two already mean "ambiguous".
    """
    if not text:
        raise InvalidArgument(f"{kind} name or id is required", reason="MISSING_" + kind.upper())
    if is_full_id(text) and exists(text):
        return text
    found = by_name(text)
    if found:
        return found
    if _HEX.match(text):
        ids = list(by_prefix(text))
        if len(ids) == 1:
            return ids[0]
        if len(ids) > 1:
            raise InvalidArgument(
                f"{kind} id prefix {text!r} is ambiguous: it matches several {kind}s",
                reason="AMBIGUOUS_ID",
            )
    raise NotFound(f"no such {kind} {text!r}", reason=f"{kind.upper()}_NOT_FOUND")


def resolve_id(
    kind: str,
    text: str,
    *,
    exists: Callable[[str], bool],
    by_prefix: Callable[[str], Sequence[str]],
) -> str:
    """Like `resolve` for objects named only by id (full or unique prefix)."""
    return resolve(kind, text, exists=exists, by_name=lambda _n: None, by_prefix=by_prefix)
