"""Hosts as their driver services register them in Redis.

Each driver service writes `host:<id>` (a hash: id, address,
advertise_address, drivers (JSON list of {"name","scope","error"}),
last_heartbeat (unix seconds on Redis' clock), ttl) and adds its id to the set
`hosts`, then heartbeats. A host is READY while Redis' TIME - last_heartbeat
<= ttl (with a grace after a Redis restart: services/liveness.py); the record
is kept afterwards so that it shows as UNREACHABLE. The controller only reads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from controller_service import listing
from controller_service.models import DriverCap, DriverInfo, Host, HostState, Page, Scope
from services import liveness
from services.errors import FailedPrecondition, NotFound, Unavailable

if TYPE_CHECKING:
    from controller_service.repository import Repository

log = logging.getLogger(__name__)

# What Repository.host_records() returns: fields by host id, and the store's clock.
HostRecords = tuple[dict[str, dict[str, str]], liveness.StoreClock]

# A host silent for up to this many of its TTLs counts as restarting (a driver
# service restart takes seconds; its TTL is 10 s by default).
RESTART_WINDOW_TTLS = 6


def heartbeat_of(fields: Mapping[str, str], default_ttl: float) -> tuple[float, float]:
    """(last_heartbeat, ttl) of a host's hash; tolerant of missing or malformed
    fields (a host registering right now may have written only part of them)."""
    last = liveness.as_float(fields.get("last_heartbeat"))
    return last, liveness.as_float(fields.get("ttl"), default_ttl) or default_ttl


def parse_host(host_id: str, fields: Mapping[str, str], default_ttl: float, live: bool) -> Host:
    last, ttl = heartbeat_of(fields, default_ttl)
    return Host(
        id=fields.get("id") or host_id,
        address=fields.get("address", ""),
        advertise_address=fields.get("advertise_address", ""),
        drivers=parse_drivers(fields.get("drivers", "")),
        last_heartbeat=last,
        ttl=ttl,
        state=HostState.READY if live else HostState.UNREACHABLE,
    )


def parse_drivers(text: str) -> tuple[DriverCap, ...]:
    if not text:
        return ()
    try:
        items = json.loads(text)
    except ValueError:
        return ()
    caps = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not item.get("name"):
            continue
        scope_text = str(item.get("scope") or "").lower()
        scope = Scope(scope_text) if scope_text in ("local", "global") else None
        error = str(item.get("error") or "")
        if scope is None and not error:
            error = f"invalid scope {item.get('scope')!r}"
        caps.append(DriverCap(name=str(item["name"]), scope=scope, error=error))
    return tuple(caps)


def aggregate_drivers(hosts: Sequence[Host]) -> list[DriverInfo]:
    """One entry per driver name across hosts. A driver whose hosts disagree
    on its scope is reported with an error and is not usable."""
    by_name: dict[str, dict] = {}
    for host in hosts:
        for cap in host.drivers:
            entry = by_name.setdefault(cap.name, {"scopes": set(), "hosts": [], "errors": []})
            if cap.error:
                entry["errors"].append(f"{host.id}: {cap.error}")
                continue
            entry["scopes"].add(cap.scope)
            entry["hosts"].append(host.id)
    out = []
    for name in sorted(by_name):
        entry = by_name[name]
        scopes = entry["scopes"]
        errors = list(entry["errors"])
        scope = next(iter(scopes)) if len(scopes) == 1 else None
        if len(scopes) > 1:
            errors.insert(0, "hosts disagree on the scope: " + ", ".join(sorted(scopes)))
        out.append(
            DriverInfo(
                name=name,
                scope=scope,
                hosts=tuple(sorted(entry["hosts"])),
                error="; ".join(errors),
            )
        )
    return out


class Hosts:
    def __init__(self, repo: Repository, default_ttl: float) -> None:
        self.repo = repo
        self.default_ttl = default_ttl

    def _read(self, records: HostRecords | None = None) -> tuple[list[Host], liveness.StoreClock]:
        """Every registered host, judged together on Redis' clock (a host's
        liveness after a Redis restart depends on the others' heartbeats).
        `records`: repo.host_records() as the caller just read them."""
        found, clock = records if records is not None else self.repo.host_records()
        beats = {h: heartbeat_of(f, self.default_ttl) for h, f in found.items()}
        live = liveness.judge(beats, clock)
        hosts = [parse_host(h, f, self.default_ttl, live[h]) for h, f in found.items()]
        return hosts, clock

    def find(self, host_id: str) -> Host | None:
        hosts, _clock = self._read()
        return next((h for h in hosts if h.id == host_id), None)

    def get(self, host_id: str) -> Host:
        host = self.find(host_id) if host_id else None
        if host is None:
            raise NotFound(f"no such host {host_id!r}", reason="HOST_NOT_FOUND")
        return host

    def all(self) -> list[Host]:
        return self._read()[0]

    def ready(self, host_id: str, records: HostRecords | None = None) -> Host:
        """The host, READY; UNAVAILABLE naming it when it missed its heartbeat.
        `records`: repo.host_records() as the caller just read them."""
        hosts, clock = self._read(records) if host_id else ([], None)
        host = next((h for h in hosts if h.id == host_id), None)
        if host is None or clock is None:
            raise NotFound(f"no such host {host_id!r}", reason="HOST_NOT_FOUND")
        if host.state is not HostState.READY:
            age = clock.now - host.last_heartbeat if host.last_heartbeat else float("inf")
            raise Unavailable(
                f"host {host_id!r} is unreachable: last heartbeat {age:.0f}s ago "
                f"(ttl {host.ttl:.0f}s)",
                reason="HOST_UNREACHABLE",
                metadata={"host": host_id},
            )
        return host

    def lost_sandboxes(self, host_ids: Sequence[str]) -> set[str]:
        """Sandboxes whose hosts found their network namespace gone (driver
        service start after a reboot): `host:<id>:lost_sandboxes`."""
        return self.repo.lost_sandboxes(host_ids)

    def choose(self, requested: str, driver: str = "") -> Host:
        """`requested` (which must be ready), else the only ready host (offering
        `driver` when given). FAILED_PRECONDITION when there is none or several;
        UNAVAILABLE when none is ready but one was a moment ago (restarting)."""
        if requested:
            host = self.ready(requested)
            if driver and not any(c.name == driver and not c.error for c in host.drivers):
                raise FailedPrecondition(
                    f"host {requested!r} does not offer driver {driver!r}",
                    reason="DRIVER_NOT_ON_HOST",
                )
            return host
        hosts, clock = self._read()
        offering = [
            h
            for h in hosts
            if not driver or any(c.name == driver and not c.error for c in h.drivers)
        ]
        candidates = [h for h in offering if h.state is HostState.READY]
        if not candidates:
            what = f" offering driver {driver!r}" if driver else ""
            # A host whose heartbeat stopped a moment ago is most likely
            # restarting: UNAVAILABLE, which clients retry; one long silent
            # (or none at all) will not come back by retrying.
            restarting = [
                h
                for h in offering
                if h.last_heartbeat and clock.now - h.last_heartbeat <= RESTART_WINDOW_TTLS * h.ttl
            ]
            if restarting:
                host = min(restarting, key=lambda h: clock.now - h.last_heartbeat)
                raise Unavailable(
                    f"no ready host{what}: host {host.id!r} is unreachable (last "
                    f"heartbeat {clock.now - host.last_heartbeat:.0f}s ago); retry when it is back",
                    reason="HOST_UNREACHABLE",
                    metadata={"host": host.id},
                )
            raise FailedPrecondition(f"no ready host{what}", reason="NO_READY_HOST")
        if len(candidates) > 1:
            names = ", ".join(h.id for h in candidates)
            raise FailedPrecondition(
                f"several ready hosts ({names}): name one with `host`",
                reason="HOST_AMBIGUOUS",
            )
        return candidates[0]

    def drivers(self) -> list[DriverInfo]:
        return aggregate_drivers(self.all())

    def list(self, page_size: int, token: str) -> Page[Host]:
        return listing.paginate(self.all(), lambda h: h.id, page_size, token)

    def list_drivers(self, page_size: int, token: str) -> Page[DriverInfo]:
        return listing.paginate(self.drivers(), lambda d: d.name, page_size, token)

    def driver_scope(self, name: str) -> Scope:
        """The negotiated scope of driver `name` (from the hosts' capabilities)."""
        for info in self.drivers():
            if info.name != name:
                continue
            if info.scope is None or not info.hosts:
                raise FailedPrecondition(
                    f"driver {name!r} is not usable: {info.error}", reason="DRIVER_UNUSABLE"
                )
            return info.scope
        raise NotFound(f"no such driver {name!r} on any host", reason="DRIVER_NOT_FOUND")
