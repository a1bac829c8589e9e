"""Docker's `--filter KEY=VALUE` and time flags for cnmctl; pure (no grpc, no I/O).

`network ls`, `network prune` and `events` take the filter keys `docker`
takes for them; each parser raises ValueError naming the bad value (cnmctl
turns that into a usage error, exit 2, before anything is sent). Times are
what `docker events --since` accepts: RFC 3339 (`2026-12-05T08:00:00Z`, a
bare date), Unix seconds (`1733385600.5`), or a Go duration before now
(`10m`, `1h30m`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

NETWORK_FILTERS = ("name", "id", "driver", "label", "scope", "type", "dangling")
PRUNE_FILTERS = ("label", "until")
EVENT_FILTERS = ("type", "event", "network", "sandbox")
SCOPES = ("local", "global")
NETWORK_TYPES = ("builtin", "custom")
EVENT_TYPES = ("network", "endpoint", "sandbox", "host")
EVENT_ACTIONS = ("create", "destroy", "join", "leave", "up", "down", "connect", "disconnect")
_TRUE = ("true", "1")
_FALSE = ("false", "0")


def group(items: Sequence[str], known: Sequence[str]) -> dict[str, list[str]]:
    """`-f KEY=VALUE` flags grouped by key, keys checked against `known`."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"bad format of filter (expected name=value): {item!r}")
        if key not in known:
            raise ValueError(f"invalid filter {key!r} (known: {', '.join(known)})")
        out.setdefault(key, []).append(value)
    return out


def _one_of(key: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    for value in values:
        if value not in allowed:
            raise ValueError(f"invalid filter '{key}={value}' ({' or '.join(allowed)})")


def boolean(key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"invalid filter '{key}={value}' (true or false)")


def network_filters(items: Sequence[str]) -> dict[str, list[str]]:
    """`network ls -f`: values of one key are OR'ed, except `label`, whose
    values must all match (as docker)."""
    out = group(items, NETWORK_FILTERS)
    _one_of("scope", out.get("scope", ()), SCOPES)
    _one_of("type", out.get("type", ()), NETWORK_TYPES)
    dangling = {boolean("dangling", v) for v in out.get("dangling", ())}
    if len(dangling) > 1:
        raise ValueError("invalid filter: dangling=true and dangling=false together")
    return out


@dataclass(frozen=True)
class PruneFilter:
    labels: tuple[str, ...] = ()
    until: float | None = None


def prune_filter(items: Sequence[str], now: float | None = None) -> PruneFilter:
    """`network prune --filter label=K[=V] --filter until=TIME`."""
    out = group(items, PRUNE_FILTERS)
    untils = [parse_time(v, now) for v in out.get("until", ())]
    if len(untils) > 1:
        raise ValueError("only one until filter is allowed")
    return PruneFilter(labels=tuple(out.get("label", ())), until=untils[0] if untils else None)


# ---------------------------------------------------------------- times

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIX = re.compile(r"\d+(\.\d+)?")


def parse_duration(text: str) -> float:
    """Seconds of a Go duration ("10m", "1h30m", "1.5s"); ValueError otherwise."""
    pos, total = 0, 0.0
    if not text:
        raise ValueError("empty duration")
    while pos < len(text):
        match = _DURATION.match(text, pos)
        if not match:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return total


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds of a docker time value: RFC 3339 (or a date, or a time
    without zone, taken as UTC), Unix seconds, or a duration before `now`."""
    now = time.time() if now is None else now
    if _UNIX.fullmatch(text):
        return float(text)
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: RFC 3339 (2006-01-02T15:04:05Z), "
            "Unix seconds, or a duration (10m)"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class EventFilter:
    """`events --filter`: AND across keys, OR within one, as docker."""

    types: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    sandboxes: tuple[str, ...] = ()

    def matches(
        self, kind: str, action: str, obj_id: str, name: str, attrs: Mapping[str, str]
    ) -> bool:
        """`kind`/`action` as `formatting.event_kind` gives them ("endpoint", "join")."""
        if self.types and kind not in self.types:
            return False
        if self.actions and not any(_action_is(a, kind, action) for a in self.actions):
            return False
        if self.networks:
            refs = (
                (obj_id, name)
                if kind == "network"
                else (attrs.get("network", ""), attrs.get("network_name", ""))
            )
            if not any(_refers(v, *refs) for v in self.networks):
                return False
        if self.sandboxes:
            refs = (obj_id, name) if kind == "sandbox" else (attrs.get("sandbox", ""), "")
            if not any(_refers(v, *refs) for v in self.sandboxes):
                return False
        return True


def _action_is(wanted: str, kind: str, action: str) -> bool:
    # docker names an endpoint's join/leave "connect"/"disconnect" on the network.
    alias = {"connect": "join", "disconnect": "leave"}.get(wanted)
    return action == wanted or (kind == "endpoint" and action == alias)


def _refers(wanted: str, obj_id: str, name: str) -> bool:
    """Docker's reference rule: exact name, or id prefix."""
    return bool(wanted) and (wanted == name or (bool(obj_id) and obj_id.startswith(wanted)))


def event_filter(items: Sequence[str]) -> EventFilter:
    out = group(items, EVENT_FILTERS)
    _one_of("type", out.get("type", ()), EVENT_TYPES)
    _one_of("event", out.get("event", ()), EVENT_ACTIONS)
    return EventFilter(
        types=tuple(out.get("type", ())),
        actions=tuple(out.get("event", ())),
        networks=tuple(out.get("network", ())),
        sandboxes=tuple(out.get("sandbox", ())),
    )
