"""Host port allocation for one host, atomic in Redis.

    ports = PortAllocator(store, host_id)
    bindings = ports.allocate(endpoint_id, plan_requests(...))   # all or nothing
    ports.owned(endpoint_id)      # what it holds (to unpublish)
    ports.release(endpoint_id)    # give everything back (idempotent)
    ports.reconcile({endpoint_id: bindings, ...})   # after a restart

Keys (`Store.key("ports", <host_id>, ...)`; the host's driver service is their
only writer, every write a Lua script so that two writers could never hand
out one port twice):

    ports:<host>:alloc    hash "<proto>/<4|6>/<port>" -> "<host ip>@<owner>[,...]"
    ports:<host>:owners   hash <owner> -> JSON list of the bindings it holds
    ports:<host>:cursor   hash <proto> -> last dynamic port handed out

Allocations are per host, host address and protocol, with Docker's conflict
rule (0.0.0.0 / :: overlap every address of their family). The owner is the
endpoint id: a crash can never leak a port, because a restarted driver
releases every owner that is not a joined endpoint (`reconcile`). Ports a
process of the host listens on are refused too (see `listeners`).

Messages follow libnetwork's: "Bind for 0.0.0.0:8080 failed: port is already
allocated" (ALREADY_EXISTS); a range with no free port is RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from driver_service import osl
from services.errors import AlreadyExists, CnmError, Exhausted, FailedPrecondition, Internal
from services.store import Store
from services.values.ports import PortBinding, host_binding

from . import lua
from .listeners import Listener, busy_ports, is_local_address, overlaps, read_listeners
from .plan import DEFAULT_DYNAMIC_RANGE, PortRequest, Target, parse_port_range

log = logging.getLogger(__name__)

DYNAMIC_RANGE_SYSCTL = "net.ipv4.ip_local_port_range"


def read_dynamic_range() -> tuple[int, int]:
    """The host's net.ipv4.ip_local_port_range, or 49153-65535 when unreadable."""
    try:
        text = osl.get_sysctl(DYNAMIC_RANGE_SYSCTL)
    except CnmError as e:
        log.warning("cannot read %s (%s); using %d-%d", DYNAMIC_RANGE_SYSCTL, e,
                    *DEFAULT_DYNAMIC_RANGE)  # fmt: skip
        return DEFAULT_DYNAMIC_RANGE
    parsed = parse_port_range(text)
    if parsed is None:
        log.warning("unusable %s %r; using %d-%d", DYNAMIC_RANGE_SYSCTL, text,
                    *DEFAULT_DYNAMIC_RANGE)  # fmt: skip
        return DEFAULT_DYNAMIC_RANGE
    return parsed


_STORED = PortBinding()  # stored allocations keep only what the kernel needs


def _binding(d: Mapping[str, Any], requested: PortBinding = _STORED) -> PortBinding:
    """A published binding: the requested one with the host port chosen."""
    return dataclasses.replace(
        requested,
        protocol=d["protocol"],
        host_ip=d["host_ip"],
        host_port=int(d["host_port"]),
        host_port_end=0,
        container_port=int(d["container_port"]),
        container_port_end=0,
        container_ip=d["container_ip"],
    )


def _bindings(raw: bytes | str | None) -> tuple[PortBinding, ...]:
    if not raw:
        return ()
    data = json.loads(raw)
    # cjson encodes an empty table as {}.
    return tuple(_binding(d) for d in data) if isinstance(data, list) else ()


def exact_requests(bindings: Sequence[PortBinding]) -> list[PortRequest]:
    """Requests that re-claim exactly these (reported) bindings."""
    return [
        PortRequest(
            b.protocol,
            b.container_port,
            (Target(b.host_ip, b.container_ip),),
            b.host_port,
            b.host_port,
            binding=b,
        )
        for b in bindings
    ]


class PortAllocator:
    def __init__(
        self,
        store: Store,
        host_id: str,
        *,
        listeners: Callable[[str], set[Listener]] = read_listeners,
        dynamic_range: Callable[[], tuple[int, int]] = read_dynamic_range,
        is_local: Callable[[str], bool] = is_local_address,
    ) -> None:
        self.store = store
        self.host_id = host_id
        self.keys = [store.key("ports", host_id, part) for part in ("alloc", "owners", "cursor")]
        self._listeners = listeners
        self._dynamic_range = dynamic_range
        self._is_local = is_local
        self._allocate = store.script(lua.ALLOCATE)
        self._release = store.script(lua.RELEASE)

    def allocate(
        self, owner: str, requests: Sequence[PortRequest], *, check_listeners: bool = True
    ) -> tuple[PortBinding, ...]:
        """One host port per request, for every target of it; all or nothing.

        Replaces whatever `owner` held before (so a retry converges). Raises
        AlreadyExists for a given port that is taken (allocated, or listened on
        by a host process), Exhausted when a range has no free port left,
        FailedPrecondition for a host address that is on no interface of the host.
        """
        if check_listeners:
            self._check_local(requests)
        dynamic = self._dynamic_range() if any(r.dynamic for r in requests) else (0, 0)
        seen: dict[str, set[Listener]] = {}
        payload = []
        ranges = []
        for r in requests:
            low, high = dynamic if r.dynamic else (r.low, r.high)
            ranges.append((low, high))
            ips = [t.host_ip for t in r.targets]
            busy: list[int] = []
            if check_listeners:
                if r.protocol not in seen:
                    seen[r.protocol] = self._listeners(r.protocol)
                busy = busy_ports(seen[r.protocol], ips, low, high)
            payload.append(
                {
                    "protocol": r.protocol,
                    "container_port": r.container_port,
                    "low": low,
                    "high": high,
                    "dynamic": r.dynamic,
                    "busy": busy,
                    "targets": [
                        {"host_ip": t.host_ip, "container_ip": t.container_ip} for t in r.targets
                    ],
                }
            )
        raw = self._allocate(keys=self.keys, args=[owner, json.dumps(payload)])
        result = json.loads(raw)
        if "error" in result:
            i = int(result["index"])
            raise self._error(requests[i], ranges[i], result, seen.get(requests[i].protocol, set()))
        ok = result.get("ok")
        if not isinstance(ok, list):
            return ()
        # One result per target of each request, in request order (lua.ALLOCATE).
        requested = [r.binding for r in requests for _ in r.targets]
        return tuple(_binding(d, b) for d, b in zip(ok, requested, strict=True))

    def _check_local(self, requests: Sequence[PortRequest]) -> None:
        for r in requests:
            for t in r.targets:
                if not self._is_local(t.host_ip):
                    host = host_binding(t.host_ip, r.low) if r.low else t.host_ip
                    raise FailedPrecondition(
                        f"Bind for {host} failed: cannot assign requested address "
                        f"({t.host_ip} is not an address of this host)",
                        reason="HOST_IP_NOT_LOCAL",
                        metadata={"protocol": r.protocol, "binding": r.spec, "host_ip": t.host_ip},
                    )

    def _error(
        self,
        req: PortRequest,
        span: tuple[int, int],
        res: Mapping[str, Any],
        listeners: set[Listener],
    ) -> CnmError:
        ip = req.targets[0].host_ip
        meta = {"protocol": req.protocol, "binding": req.spec}
        if res["error"] == "taken":
            ip, port, other = res["ip"], int(res["port"]), res["holder_ip"]
            extra = f" (overlaps {host_binding(other, port)})" if other != ip else ""
            return AlreadyExists(
                f"Bind for {host_binding(ip, port)} failed: port is already allocated{extra}",
                reason="PORT_ALREADY_ALLOCATED",
                metadata={**meta, "host": host_binding(ip, port)},
            )
        if res["error"] == "listening":
            port = int(res["port"])
            holders = sorted(
                host_binding(lip, p)
                for lip, p in listeners
                if p == port and any(overlaps(lip, t.host_ip) for t in req.targets)
            )
            who = holders[0] if holders else f"port {port}"
            return AlreadyExists(
                f"Bind for {host_binding(ip, port)} failed: port is already allocated "
                f"(a process on the host listens on {who}/{req.protocol})",
                reason="PORT_IN_USE",
                metadata={**meta, "host": host_binding(ip, port)},
            )
        if res["error"] == "full":
            low, high = span
            where = "the dynamic range " if req.dynamic else ""
            return Exhausted(
                f"Bind for {host_binding(ip, f'{low}-{high}')} failed: every port of "
                f"{where}{low}-{high}/{req.protocol} is allocated or in use",
                reason="PORTS_EXHAUSTED",
                metadata={**meta, "range": f"{low}-{high}"},
            )
        return Internal(f"port allocation of {req.spec} failed: {res!r}")

    def owned(self, owner: str) -> tuple[PortBinding, ...]:
        """The bindings `owner` holds (empty when none)."""
        return _bindings(self.store.client.hget(self.keys[1], owner))

    def release(self, owner: str) -> tuple[PortBinding, ...]:
        """Free every port `owner` holds; returns them. Idempotent."""
        return _bindings(self._release(keys=self.keys, args=[owner]))

    def published(self) -> dict[str, int]:
        """How many ports this host publishes, by protocol."""
        counts: dict[str, int] = {}
        for raw in self.store.client.hvals(self.keys[1]):
            for b in _bindings(raw):
                span = max(b.host_port_end - b.host_port, 0) + 1
                counts[b.protocol] = counts.get(b.protocol, 0) + span
        return counts

    def owners(self) -> list[str]:
        return sorted(cast("list[str]", self.store.client.hkeys(self.keys[1])))  # decoded replies

    def reconcile(self, keep: Mapping[str, Sequence[PortBinding]]) -> list[str]:
        """After a restart: release every owner not in `keep`, and make each owner in
        `keep` hold exactly its bindings again. Returns the problems (also logged)."""
        problems: list[str] = []
        for owner in self.owners():
            if owner not in keep:
                gone = self.release(owner)
                log.warning(
                    "released %d port(s) of %s, which is not a joined endpoint",
                    len(gone),
                    owner[:12],
                )
        for owner, bindings in keep.items():
            want = {_key(b) for b in bindings}
            if {_key(b) for b in self.owned(owner)} == want:
                continue
            try:
                self.allocate(owner, exact_requests(bindings), check_listeners=False)
                log.warning("endpoint %s: re-claimed its published ports", owner[:12])
            except CnmError as e:
                problems.append(f"endpoint {owner[:12]}: cannot re-claim its ports: {e}")
                log.error("%s", problems[-1])
        return problems

    def purge(self) -> None:
        """Forget every allocation of this host (`cnm-driver --cleanup`)."""
        self.store.client.delete(*self.keys)


def _key(b: PortBinding) -> tuple[str, str, int, str, int]:
    return (b.protocol, b.host_ip, b.host_port, b.container_ip, b.container_port)
