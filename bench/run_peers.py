"""cnm against its peers (CNI bridge+host-local+portmap, netavark, Docker's
libnetwork), side by side on this machine, in namespaces this command makes.

    sudo .venv/bin/python bench/run_peers.py            # full run, ~10-15 min
    sudo .venv/bin/python bench/run_peers.py --quick    # small N, < 60 s

Prints a table with ratios and the issue's targets beside the figures (it does
not fail on them) and writes JSON to bench/results/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from peers import netns, phases, report  # noqa: E402
from peers.base import Skip, System, pids_under  # noqa: E402
from peers.cni import Cni  # noqa: E402
from peers.cnm import Cnm  # noqa: E402
from peers.cnm_cni import CnmCni  # noqa: E402
from peers.docker import Docker  # noqa: E402
from peers.docker_cnm import DockerCnm  # noqa: E402
from peers.netavark import Netavark  # noqa: E402
from peers.profile import kernel_floor, profile_connect  # noqa: E402
from peers.setup import install_peers  # noqa: E402

SYSTEMS: dict[str, type[System]] = {
    "cnm": Cnm, "cnm-cni": CnmCni, "cni": Cni, "netavark": Netavark, "docker": Docker,
    "docker-cnm": DockerCnm,
}  # fmt: skip
OCTETS = {"cnm": 200, "cni": 201, "netavark": 202, "docker": 203, "cnm-cni": 204, "docker-cnm": 205}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small N everywhere: < 60 s")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--n", type=int, help="containers of the connect/disconnect phase (200)")
    p.add_argument("--flat-k", type=int, help="containers of the flatness phase (1000)")
    p.add_argument("--parallel", type=int, help="cnm's containers of the parallel phase (400)")
    p.add_argument("--parallel-peers", type=int, help="the peers' containers there (200)")
    p.add_argument("--clients", type=int, default=8, help="parallel clients (8)")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["connect", "flatness", "parallel", "profile", "ipam"])  # fmt: skip
    p.add_argument("--no-install", action="store_true", help="do not apt-get install the peers")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    full = {"n": 200, "flat_k": 1000, "parallel": 400, "parallel_peers": 200, "per_net": 250, "every": 100,
            "ipam_prefix": 16, "profile_n": 100, "floor_n": 100}  # fmt: skip
    quick = {"n": 16, "flat_k": 40, "parallel": 32, "parallel_peers": 16, "per_net": 20, "every": 20,
             "ipam_prefix": 22, "profile_n": 16, "floor_n": 20}  # fmt: skip
    args.size = quick if args.quick else full
    for key in ("n", "flat_k", "parallel", "parallel_peers"):
        if getattr(args, key) is not None:
            args.size[key] = getattr(args, key)
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        print("run_peers: needs root (namespaces, bridges, nftables)", file=sys.stderr)
        return 2
    if not args.no_install:
        install_peers([s for s in args.systems if not s.startswith("cnm")])
    # Keep Ctrl-C and SIGTERM on the path through `finally`, which removes everything.
    signal.signal(signal.SIGTERM, _interrupt)
    tag = f"cnmb{secrets.token_hex(3)}"
    run_dir = Path(f"/tmp/{tag}")
    run_dir.mkdir(mode=0o700)
    run = phases.Run(tag=tag, run_dir=run_dir, systems={})
    started = time.time()
    load_at_start = os.getloadavg()
    interrupted = False
    size = args.size
    try:
        for name in args.systems:
            system = SYSTEMS[name](tag, run_dir, OCTETS[name])
            run.systems[name] = system
            try:
                system.start()
            except Skip as e:
                run.skipped[name] = str(e)
                phases.say(f"{name}: SKIPPED: {e}")
            except Exception as e:
                run.fail(system, "start", e)
        for name in run.skipped:
            run.systems[name].stop()
            del run.systems[name]
        if "connect" not in args.skip:
            phases.phase_connect(run, size["n"])
        if "flatness" not in args.skip:
            phases.phase_flatness(
                run, size["flat_k"], size["per_net"], size["every"], ["cnm", "netavark"]
            )
        if "parallel" not in args.skip:
            phases.phase_parallel(
                run,
                size["parallel"],
                size["parallel_peers"],
                args.clients,
                size["per_net"] // 5 * 4,
            )
        cnm = run.systems.get("cnm")
        if "profile" not in args.skip and cnm is not None and "cnm" not in run.failed:
            run.results["profile"] = profile_connect(run, cnm, size["profile_n"])
            run.results["kernel_floor"] = kernel_floor(size["floor_n"])
        if "ipam" not in args.skip and cnm is not None and "cnm" not in run.failed:
            run.results["ipam"] = report.ipam_bench(cnm.ipam, size["ipam_prefix"])
        if cnm is not None:
            run.results["redis_keys_at_end"] = cnm.key_patterns()
        run.results["leftovers"] = {
            name: system.leftovers() for name, system in run.systems.items()
        }
    except KeyboardInterrupt:
        interrupted = True
    finally:
        problems: list[str] = []
        for system in run.systems.values():
            try:
                problems += system.stop()
            except Exception as e:
                problems.append(f"{system.name} stop: {type(e).__name__}: {e}")
        left_ns = netns.tagged_namespaces(tag)
        if left_ns:
            problems.append(f"namespaces left: {left_ns}; deleted")
            netns.delete_namespaces(left_ns)
        for pid in pids_under(str(run_dir)):
            problems.append(f"pid {pid} still running; killed")
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(run_dir, ignore_errors=True)
        run.results["teardown_problems"] = problems
        for line in problems:
            print(f"LEFT: {line}")
    if interrupted:
        print("run_peers: interrupted; everything it made is removed (LEFT lines above if not)")
        return 130
    run.results["meta"] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "quick": args.quick,
        "sizes": size,
        "clients": args.clients,
        "machine": {**machine(), "load_avg_at_start": load_at_start},
        "skipped": run.skipped,
        "failed": run.failed,
        "versions": versions(run),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"peers-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(run.results, indent=1, default=str))
    print(report.table(run.results))
    print(f"JSON: {path}")
    return 1 if run.failed else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def machine() -> dict[str, object]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "?",
    )  # fmt: skip
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "mem_gib": round(int(mem) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_at_end": os.getloadavg(),
    }


def versions(run: phases.Run) -> dict[str, str]:
    def pkg(name: str) -> str:
        res = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name],
                             capture_output=True, text=True, check=False)  # fmt: skip
        return res.stdout or "not installed"

    return {
        "containernetworking-plugins": pkg("containernetworking-plugins"),
        "netavark": pkg("netavark"),
        "docker.io": pkg("docker.io"),
        "iptables": pkg("iptables"),
        "nftables": pkg("nftables"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
