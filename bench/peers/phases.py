"""The measurements of issue 10, items 1-4, 6 and 7, over the systems that started."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peers import netns
from peers.base import CONTAINER_PORT, Container, NetworkPlan, System
from peers.stats import buckets, rotation, summarize

log = logging.getLogger(__name__)


@dataclass
class Run:
    tag: str
    run_dir: Path
    systems: dict[str, System]
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    _ports: dict[str, Any] = field(default_factory=dict)
    _nets: dict[str, Any] = field(default_factory=dict)

    def active(self, names: list[str] | None = None) -> list[System]:
        return [
            s
            for n, s in self.systems.items()
            if n not in self.failed and (names is None or n in names)
        ]

    def fail(self, system: System, what: str, error: BaseException) -> None:
        msg = f"{what}: {type(error).__name__}: {error}"
        log.error("%s failed in %s", system.name, msg)
        self.failed[system.name] = msg


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ containers


def make_containers(
    run: Run, system: System, phase: str, count: int, per_network: int
) -> tuple[list[Container], list[NetworkPlan]]:
    """Networks and containers whose namespaces exist (untimed)."""
    ports = run._ports.setdefault(system.name, itertools.count(20000))
    nets = run._nets.setdefault(system.name, itertools.count(1))
    plans = [system.plan_network(next(nets)) for _ in range(-(-count // per_network))]
    for plan in plans:
        system.create_network(plan)
    containers = [
        Container(
            name=f"{run.tag}-{system.short or system.name[:3]}-{phase}{i}",
            network=plans[i // per_network].index,
            slot=i % per_network,
            host_port=next(ports),
        )
        for i in range(count)
    ]
    if system.runner_makes_namespaces:
        netns.add_namespaces([c.name for c in containers])
        for c in containers:
            c.path = f"/run/netns/{c.name}"
    system.prepare(containers)
    return containers, plans


def dispose(system: System, containers: list[Container], plans: list[NetworkPlan]) -> None:
    """Untimed, after the disconnects: sandboxes, namespaces, networks."""
    system.release(containers)
    if system.runner_makes_namespaces:
        netns.delete_namespaces([c.name for c in containers])
    for plan in plans:
        system.delete_network(plan)


def check_gateways(system: System, containers: list[Container]) -> dict[str, Any]:
    """One ping (1 s) to each gateway; a miss is tried again once with 3 s, so a
    slow answer on a loaded machine is told apart from a broken one."""
    first = netns.ping_each([(c.path, c.gateway) for c in containers])
    again = netns.ping_each(first, timeout_s=3) if first else []
    return {
        "pinged": len(containers),
        "missed_first_ping": [p for p, _ in first],
        "unreachable": [p for p, _ in again],
    }


def check_ports(system: System, sample: list[Container]) -> dict[str, Any]:
    """A TCP server in the container on port 80; connect to the published host port
    from the host namespace (locally generated traffic through the port mapping)."""
    ok, bad = 0, []
    for c in sample:
        server = netns.start_listener(c.path, CONTAINER_PORT, f"hello from {c.name}")
        try:
            answer = system.agent.tcp(system.host_ip, c.host_port)  # type: ignore[union-attr]
        finally:
            server.kill()
            server.wait()
        if answer.get("data") == f"hello from {c.name}":
            ok += 1
        else:
            bad.append(f"{c.name} {system.host_ip}:{c.host_port}: {answer}")
    return {"checked": len(sample), "ok": ok, "failures": bad}


def interleaved(
    run: Run,
    made: dict[str, list[Container]],
    op: str,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Op ("connect"/"disconnect") on container i of every system, rotating who goes first."""
    lat: dict[str, list[float]] = {name: [] for name in made}
    count = max((len(cs) for cs in made.values()), default=0)
    for i in range(count):
        for name in rotation(list(made), i):
            system = run.systems[name]
            if name in run.failed or i >= len(made[name]):
                continue
            try:
                lat[name].append(getattr(system, op)(made[name][i]))
            except Exception as e:  # one broken system must not stop the others
                run.fail(system, f"{op} #{i + 1}", e)
        if on_step:
            on_step(i + 1)
    return lat


def restart(run: Run, containers: list[Container]) -> Callable[[System], None]:
    def go(system: System) -> None:
        try:
            system.restart()
            if system.runner_makes_namespaces:
                netns.delete_namespaces([c.name for c in containers])
        except Exception as e:
            run.fail(system, "restart", e)

    return go


def _cleanup_all(run: Run, made, plans) -> None:
    for name, containers in made.items():
        try:
            dispose(run.systems[name], containers, plans[name])
        except Exception as e:
            run.fail(run.systems[name], "clean-up", e)


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds these processes have used so far."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every CPU of the machine since boot."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def _parallel_op(
    fn: Callable[[Container], float],
    cs: list[Container],
    clients: int,
    pids: dict[str, int] | None = None,
) -> dict:
    """`clients` callers at once over `cs`; with `pids` (the system's services),
    also their CPU per operation and how busy the whole machine was: when the
    machine is saturated, more clients cannot add throughput."""
    lat: list[float] = []
    pids = pids or {}
    cpu0 = {name: _cpu_s([pid]) for name, pid in pids.items()}
    busy0 = _machine_busy()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        # Client j takes containers j, j + clients, ...: each its own share.
        shares = [cs[j::clients] for j in range(clients)]
        for part in pool.map(lambda share: [fn(c) for c in share], shares):
            lat.extend(part)
    wall = time.perf_counter() - t0
    out = {"per_s": len(lat) / wall, "wall_s": wall, **summarize(lat).as_dict()}
    if pids:
        busy1 = _machine_busy()
        per = {n: (_cpu_s([pid]) - cpu0[n]) * 1000 / max(1, len(lat)) for n, pid in pids.items()}
        out["cpu_ms_per_op"] = per
        out["service_cpu_ms_per_op"] = sum(per.values())
        out["machine_busy"] = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    return out


# ------------------------------------------------------------------ phases


def phase_connect(run: Run, n: int) -> None:
    """Items 1, 2, 7: N containers per system, connect then disconnect, interleaved."""
    say(f"connect/disconnect: {n} containers per system, interleaved")
    made, plans = {}, {}
    for system in run.active():
        try:
            made[system.name], plans[system.name] = make_containers(run, system, "c", n, n)
        except Exception as e:
            run.fail(system, "prepare", e)
    out: dict[str, Any] = {}
    try:
        conn = interleaved(run, made, "connect")
        for name in list(made):
            system = run.systems[name]
            if name in run.failed:
                continue
            cs = made[name]
            out[name] = {
                "connect": summarize(conn[name]).as_dict(),
                "rules_connected": system.rules(),
                "gateway": check_gateways(system, cs),
                "ports": check_ports(system, [cs[0], cs[len(cs) // 2], cs[-1]]),
            }
            say(f"  {name}: connect p50 {out[name]['connect']['p50']:.1f} ms; "
                f"{out[name]['gateway']['pinged'] - len(out[name]['gateway']['unreachable'])}"
                f"/{out[name]['gateway']['pinged']} gateways answer; "
                f"ports {out[name]['ports']['ok']}/{out[name]['ports']['checked']}")  # fmt: skip
        disc = interleaved(run, made, "disconnect")
        for name in out:
            if name not in run.failed:
                out[name]["disconnect"] = summarize(disc[name]).as_dict()
                out[name]["rules_after_disconnect"] = run.systems[name].rules()
    finally:
        _cleanup_all(run, made, plans)
    run.results["connect"] = out


def phase_flatness(run: Run, k: int, per_network: int, every: int, names: list[str]) -> None:
    """Item 3 (and 6 at k = K): latency of the k-th connect, rules as k grows."""
    systems = run.active(names)
    say(f"flatness: k = 1..{k} for {', '.join(s.name for s in systems)}, "
        f"{per_network} per network")  # fmt: skip
    made, plans = {}, {}
    for system in systems:
        try:
            made[system.name], plans[system.name] = make_containers(
                run, system, "f", k, per_network
            )
        except Exception as e:
            run.fail(system, "prepare", e)
    rules: dict[str, list[tuple[int, int]]] = {
        name: [(0, run.systems[name].rules())] for name in made
    }
    # RSS of each service after the first bucket and after the last: flat is the target.
    rss_at: dict[int, dict[str, int]] = {}

    def count_rules(done: int) -> None:
        if done % every == 0:
            for name in made:
                if name not in run.failed:
                    rules[name].append((done, run.systems[name].rules()))
                    system = run.systems[name]
                    if done in (every, k) and hasattr(system, "rss"):
                        rss_at[done] = system.rss()
            say(f"  k = {done}")

    out: dict[str, Any] = {}
    try:
        conn = interleaved(run, made, "connect", count_rules)
        for name in made:
            if name in run.failed:
                continue
            system = run.systems[name]
            cs = made[name]
            out[name] = {
                "buckets": [b.__dict__ for b in buckets(conn[name], every)],
                "rules_by_k": rules[name],
                "gateway_sample_every": 10,
                "gateway": check_gateways(system, cs[::10]),
            }
            if hasattr(system, "resources"):
                run.results["resources"] = {
                    "endpoints": len(cs),
                    **system.resources(),
                    "rss_kib_by_endpoints": [[n, rss] for n, rss in sorted(rss_at.items())],
                }
        # Only cnm's disconnects are timed here (1,000 netavark teardowns would
        # cost minutes and are not asked for): the others restart afresh.
        timed = {n: cs for n, cs in made.items() if n == "cnm"}
        disc = interleaved(run, timed, "disconnect")
        for name in timed:
            if name in out and name not in run.failed:
                out[name]["disconnect"] = summarize(disc[name]).as_dict()
                out[name]["disconnect_buckets"] = [
                    b.__dict__ for b in buckets(disc[name][::-1], every)
                ]
                system = run.systems[name]
                if hasattr(system, "rss") and "resources" in run.results:
                    # Back at 0 endpoints: what stays is a leak or the allocator's keep.
                    run.results["resources"]["rss_kib_after_disconnect"] = system.rss()
    finally:
        for name in list(made):
            if name != "cnm" and name not in run.failed:
                restart(run, made.pop(name))(run.systems[name])
        _cleanup_all(run, made, plans)
    cnm = run.systems.get("cnm")
    if cnm is not None and "cnm" not in run.failed and "resources" in run.results:
        # Sandboxes and networks deleted too: nothing of the phase is left to keep.
        run.results["resources"]["rss_kib_after_cleanup"] = cnm.rss()  # type: ignore[attr-defined]
    run.results["flatness"] = out


def phase_parallel(run: Run, count: int, peer_count: int, clients: int, per_network: int) -> None:
    """Item 4: `clients` callers at once, one system at a time: cnm with `count`
    containers, the peers with `peer_count` (their rate is what is compared)."""
    say(f"parallel: {clients} clients; cnm {count} containers, peers {peer_count}")
    out: dict[str, Any] = {}
    for system in run.active():
        n = count if system.name == "cnm" else peer_count
        made, plans = {}, {}
        try:
            made[system.name], plans[system.name] = make_containers(
                run, system, "p", n, per_network
            )
            cs = made[system.name]
            res: dict[str, Any] = {}
            # Disconnects timed for cnm only; CNI and netavark restart afresh, Docker's
            # containers are removed (which disconnects them).
            ops = ("connect", "disconnect") if system.name == "cnm" else ("connect",)
            if system.name == "cnm":
                # The same containers with one client first: the ratio in one run.
                pids = dict(system.service_pids)  # type: ignore[attr-defined]
                for op in ops:
                    res[f"{op}_one_client"] = _parallel_op(getattr(system, op), cs, 1, pids)
            for op in ops:
                res[op] = _parallel_op(
                    getattr(system, op), cs, clients, pids if system.name == "cnm" else None
                )
                if op == "connect":
                    res["gateway_sample_every"] = 10
                    res["gateway"] = check_gateways(system, cs[::10])
            out[system.name] = res
            say(f"  {system.name}: {res['connect']['per_s']:.0f} connects/s, "
                f"p99 {res['connect']['p99']:.1f} ms")  # fmt: skip
        except Exception as e:
            run.fail(system, "parallel", e)
        finally:
            if system.name in ("cni", "netavark") and system.name not in run.failed:
                restart(run, made.pop(system.name))(system)
            _cleanup_all(run, made, plans)
    run.results["parallel"] = out
