"""List filters and pagination (pure).

Page tokens are opaque to clients: the sort key of the last item returned,
base64-encoded, so a page stays correct while objects come and go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from controller_service.builtin import is_builtin
from controller_service.models import Network, NetworkFilter, Page
from services import paging
from services.errors import InvalidArgument
from services.limits import shown

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
# A page stops early once its objects hold about this much (their repr's length),
# so a response fits gRPC's default 4 MiB message limit whatever labels they carry.
PAGE_BYTES = 2 << 20


_TOKEN_TAG = "after:"


def page_size(requested: int) -> int:
    return paging.page_size(requested, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def paginate(items: Iterable[T], key: Callable[[T], str], size: int, token: str) -> Page[T]:
    """One page of `items` (any order) sorted by `key`, after the token's key: at most
    `size` items, fewer when they would exceed PAGE_BYTES (never fewer than one)."""
    limit = page_size(size)
    after = paging.decode_token(token, tag=_TOKEN_TAG)[0] if token else None
    ordered = sorted(items, key=key)
    if after is not None:
        ordered = [i for i in ordered if key(i) > after]
    chunk = ordered[:limit]
    budget = PAGE_BYTES
    for n, item in enumerate(chunk):
        budget -= len(repr(item))
        if budget < 0 and n:
            chunk = chunk[:n]
            break
    more = len(ordered) > len(chunk)
    return Page(
        items=tuple(chunk),
        next_token=paging.encode_token(key(chunk[-1]), tag=_TOKEN_TAG) if more else "",
    )


def network_key(n: Network) -> str:
    # Names are unique, ids break ties between a deleted and a new network.
    return f"{n.name}\x00{n.id}"


def label_matches(labels: dict[str, str] | object, wanted: str) -> bool:
    name, sep, value = wanted.partition("=")
    if name not in labels:  # type: ignore[operator]
        return False
    return not sep or labels[name] == value  # type: ignore[index]


def network_matches(n: Network, f: NetworkFilter, endpoints: int = 0) -> bool:
    """AND across filter keys, OR within one key except labels, which must all
    match (Docker's `network ls --filter`). `endpoints`: how many the network
    has (only read for `dangling`).

    Names match on all or part of the name, as Docker's name filter does; ids
    match by prefix. Built-in networks are never dangling, as in Docker.
    """
    builtin = is_builtin(n)
    checks: Sequence[bool] = (
        not f.names or any(v in n.name for v in f.names),
        not f.ids or any(n.id.startswith(v) for v in f.ids),
        not f.drivers or n.driver in f.drivers,
        all(label_matches(n.labels, v) for v in f.labels),
        not f.scopes or n.scope in f.scopes,
        not f.types or ("builtin" if builtin else "custom") in f.types,
        f.dangling is None or f.dangling == (not builtin and endpoints == 0),
    )
    return all(checks)


NETWORK_TYPES = ("builtin", "custom")


def validate_labels(labels: Sequence[str], field: str) -> None:
    for label in labels:
        if not label.partition("=")[0]:
            raise InvalidArgument(
                f"invalid label filter {shown(label)}: expected key or key=value",
                reason="INVALID_FILTER",
                field=field,
            )


def validate_filter(f: NetworkFilter) -> NetworkFilter:
    validate_labels(f.labels, "filter.labels")
    for t in f.types:
        if t not in NETWORK_TYPES:
            raise InvalidArgument(
                f"invalid filter 'type={t}': builtin or custom",
                reason="INVALID_FILTER",
                field="filter.types",
            )
    return f
