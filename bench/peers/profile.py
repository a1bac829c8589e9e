"""Where cnm's connect time goes: py-spy on the three services during sequential
connects and disconnects, samples folded into categories per request handler;
and the kernel's floor (bench_osl's join: veth in place, addresses, routes, up).

py-spy samples every thread `RATE` times a second, idle ones too (`--idle`), so
a sample inside a handler is wall time spent there, waiting included:
samples / RATE / operations = milliseconds per operation.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from peers import metrics
from peers.stats import summarize

HERE = Path(__file__).resolve().parent
RATE = 400

# Handler frames (servicer methods) per operation, and what each process does for it.
HANDLERS = {
    "connect": {
        "controller": ("ControllerServicer.Connect",),
        "driver": ("DriverServicer.CreateEndpoint", "DriverServicer.Join"),
        "ipam": ("IpamServicer.RequestAddress",),
    },
    "disconnect": {
        "controller": ("ControllerServicer.Disconnect",),
        "driver": ("DriverServicer.Leave", "DriverServicer.DeleteEndpoint"),
        "ipam": ("IpamServicer.ReleaseAddress",),
    },
}

# A sample's category: the deepest frame of cnm's own code that matches one of
# these patterns (in this order); the last entry is the fallback.
CATEGORIES: dict[str, list[tuple[str, str]]] = {
    "controller": [
        (r"DriverClient\.probe ", "waits for the driver's health probe"),
        (r"controller_service/drivers_client\.py", "waits for driver service RPCs"),
        (r"controller_service/ipam_client\.py", "waits for IPAM RPCs"),
        (
            r"services/store\.py|controller_service/(redis_)?repository\.py",
            "Redis (records, intents, events)",
        ),
        (r".", "controller Python (validation, models, conversion)"),
    ],
    "driver": [
        (r"driver_service/osl/reaper\.py", "netlink: tombstone before async delete"),
        (r"driver_service/osl/(links|addressing)\.py", "netlink: veth, addresses, routes"),
        (r"driver_service/osl/(rtnl|nsenter)\.py", "netlink handle in a namespace (open)"),
        # osl/batch.py (raw netlink requests) is passed by: its time counts for the
        # osl module that sent the requests (links: Join, reaper: tombstone).
        (r"driver_service/osl/(?!batch\.py)", "osl other"),
        (r"driver_service/ports/listeners\.py", "/proc/net/tcp{,6} read (listener check)"),
        (r"driver_service/firewall/", "nftables (libnftables)"),
        (r"driver_service/conntrack\.py", "conntrack flush"),
        (r"driver_service/sandbox(_files)?\.py", "hosts/resolv.conf files (incl. lock waits)"),
        (r"driver_service/state\.py|services/store\.py", "Redis (driver state)"),
        (r".", "driver Python (manager, specs, conversion)"),
    ],
    "ipam": [
        (r"services/store\.py", "Redis (Lua allocation)"),
        (r".", "IPAM Python"),
    ],
}

_PROJECT = re.compile(r"\((controller_service|driver_service|ipam_service|services)/")


def fold(
    lines: Iterable[str], handlers: tuple[str, ...], categories: list[tuple[str, str]]
) -> tuple[Counter[str], Counter[str]]:
    """py-spy raw lines ("frame;frame;... count") → samples per category and per
    handler, for stacks that pass through one of `handlers` (pure)."""
    by_category: Counter[str] = Counter()
    by_handler: Counter[str] = Counter()
    compiled = [(re.compile(p), name) for p, name in categories]
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        handler = next((f.split(" ")[0] for f in frames if f.split(" ")[0] in handlers), None)
        if handler is None:
            continue
        by_handler[handler] += int(count)
        inside = frames[next(i for i, f in enumerate(frames) if f.startswith(handler)) :]
        by_category[categorize(inside, compiled)] += int(count)
    return by_category, by_handler


def busy_samples(lines: Iterable[str], marker: str) -> int:
    """Samples of stacks through `marker` that are not parked in a wait: the CPU
    a background thread (e.g. the sandbox files writer) takes (pure)."""
    total = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if marker in stack and count.isdigit():
            leaf = stack.rsplit(";", 1)[-1]
            if not leaf.startswith(("wait (threading.py", "Condition.wait (threading.py")):
                total += int(count)
    return total


def categorize(frames: list[str], compiled: list[tuple[re.Pattern[str], str]]) -> str:
    """The first specific category met walking from the leaf up through cnm's own
    frames (shared helpers such as services/channel.py are passed by, so a wait
    in an outgoing RPC counts for the client module that made it); the last
    category is the fallback."""
    for frame in reversed(frames):
        if _PROJECT.search(frame):
            for pattern, name in compiled[:-1]:
                if pattern.search(frame):
                    return name
    return compiled[-1][1]


def py_spy() -> str | None:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found:
        return found
    res = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "py-spy"], capture_output=True, text=True
    )
    if res.returncode != 0:
        return None
    return shutil.which("py-spy", path=str(Path(sys.executable).parent))


def profile_connect(run: Any, cnm: Any, n: int) -> dict[str, Any]:
    """n sequential connects then n disconnects of cnm, with py-spy on its services."""
    from peers import phases  # runner's helpers; imported here to keep this module pure

    spy = py_spy()
    if spy is None:
        return {"skipped": "py-spy not installable (pip install py-spy)"}
    # The services' own metrics come from a series without py-spy: sampling
    # three processes at RATE Hz takes a good part of two cores, and stretched
    # the netlink steps 5-30 x (the "unexplained 30-230 ms" of issue 15).
    phases.say(f"profile: {n} cnm connects + disconnects for the services' metrics")
    containers, plans = phases.make_containers(run, cnm, "met", n, n)
    try:
        scrapes = [cnm.scrape()]
        clean = {"connect": [cnm.connect(c) for c in containers]}
        scrapes.append(cnm.scrape())
        clean["disconnect"] = [cnm.disconnect(c) for c in containers]
        scrapes.append(cnm.scrape())
    finally:
        phases.dispose(cnm, containers, plans)
    phases.say(f"profile: {n} cnm connects + disconnects under py-spy ({RATE} Hz, --idle)")
    containers, plans = phases.make_containers(run, cnm, "prof", n, n)
    out_dir = cnm.run_dir / "py-spy"
    out_dir.mkdir(exist_ok=True)
    spies = {}
    try:
        for proc in ("ipam", "controller", "driver"):
            spies[proc] = subprocess.Popen(
                [spy, "record", "--pid", str(cnm.service_pids[f"cnm-{proc}"]), "--idle",
                 "--nonblocking", "--rate", str(RATE), "--format", "raw",
                 "-o", str(out_dir / f"{proc}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        time.sleep(1.0)  # py-spy attached
        lat = {"connect": [cnm.connect(c) for c in containers]}
        lat["disconnect"] = [cnm.disconnect(c) for c in containers]
    finally:
        for p in spies.values():
            p.send_signal(signal.SIGINT)
        for p in spies.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        phases.dispose(cnm, containers, plans)
    result: dict[str, Any] = {"ops": n, "rate_hz": RATE}
    for op, per_proc in HANDLERS.items():
        entry: dict[str, Any] = {
            "client_ms": summarize(lat[op]).as_dict(),
            "client_ms_without_py_spy": summarize(clean[op]).as_dict(),
            "processes": {},
        }
        for proc, handlers in per_proc.items():
            path = out_dir / f"{proc}.txt"
            if not path.exists():
                entry["processes"][proc] = {"error": "py-spy wrote nothing"}
                continue
            with path.open() as f:
                cats, hands = fold(f, handlers, CATEGORIES[proc])
            scale = 1000 / RATE / n  # samples → ms per operation
            entry["processes"][proc] = {
                "handlers_ms": {h: round(c * scale, 2) for h, c in hands.most_common()},
                "categories_ms": {k: round(c * scale, 2) for k, c in cats.most_common()},
            }
        entry["metrics"] = _metrics_per_op(scrapes, op, n)
        result[op] = entry
    path = out_dir / "driver.txt"
    if path.exists():
        with path.open() as f:
            busy = busy_samples(f, "Sandboxes._write_pending")
        # Per connect+disconnect pair: the writer runs after both.
        result["background_files_writer_ms_per_pair"] = round(busy * 1000 / RATE / n, 2)
    return result


def _metrics_per_op(scrapes: list[dict[str, str]], op: str, n: int) -> dict[str, Any]:
    """Per-operation figures of each service from the scrapes around the `op` series."""
    first = 0 if op == "connect" else 1
    out: dict[str, Any] = {}
    for service in scrapes[first]:
        before, after = scrapes[first][service], scrapes[first + 1][service]
        if not before or not after:
            out[service] = {"error": "metrics not readable"}
            continue
        out[service] = metrics.per_op(metrics.parse(before), metrics.parse(after), n)
    return out


def kernel_floor(n: int) -> dict[str, Any]:
    """bench_osl.py's join and leave medians: the kernel work alone, through osl."""
    res = subprocess.run(
        [sys.executable, str(HERE.parent / "bench_osl.py"), "--iterations", str(n)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out: dict[str, Any] = {"iterations": n}
    for line in res.stdout.splitlines():
        m = re.match(r"(.+?)\s+median\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", line)
        if m:
            out[m.group(1).strip()] = {"p50": float(m.group(2)), "p99": float(m.group(3))}
    if res.returncode != 0:
        out["error"] = res.stderr.strip()[-500:]
    return out
