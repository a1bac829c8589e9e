"""What does one firewall transaction cost? libnftables in-process vs `nft -j -f -`.

Runs entirely inside a throwaway network namespace it creates (and deletes),
so the machine's own ruleset is never touched:

    sudo .venv/bin/python bench/bench_nft.py [--rounds 200] [--elements 1000] [--json]

Measured, per backend:
- one port mapping added / removed as a raw JSON transaction, on an empty map
  and on a map that already holds --elements mappings;
- the same through `Firewall.add_port_mapping` / `remove_port_mapping`
  (validation, state, the generation-id bookkeeping included);
- a full sync (skeleton + every rule and element in one transaction) with 50
  networks and --elements mappings;
- `Firewall.ensure()` when nothing changed (one generation-id query) and when
  it must list and compare the tables.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from driver_service.firewall import BridgeNetwork, Firewall, ruleset  # noqa: E402
from driver_service.firewall.backend import open_backend  # noqa: E402
from services.values.ports import PortBinding  # noqa: E402


def timed(fn: Callable[[], object], rounds: int) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p90_ms": round(samples[int(len(samples) * 0.9) - 1], 3),
        "rounds": rounds,
    }


def mapping(i: int) -> PortBinding:
    ip = str(ipaddress.ip_address("10.200.0.2") + i)
    return PortBinding("tcp", "0.0.0.0", 10000 + i, container_port=80, container_ip=ip)


def networks(n: int) -> list[BridgeNetwork]:
    return [
        BridgeNetwork(f"n{i}", f"cnmb-{i}", (f"10.{200 + i // 256}.{i % 256}.0/24",))
        for i in range(n)
    ]


def bench_backend(name: str, ns: str, rounds: int, elements: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    fw = Firewall(netns=ns, backend=name, manage_sysctls=False)
    nft = open_backend(name, ns)
    try:
        fw.add_network(networks(1)[0])
        probe = mapping(elements + 1)
        add = ruleset.add_elements(
            ruleset.INET, ruleset.mapping_map(probe), [ruleset.mapping_element(probe)]
        )
        delete = ruleset.delete_elements(
            ruleset.INET, ruleset.mapping_map(probe), [ruleset.mapping_key_element(probe)]
        )

        def raw_pair() -> dict[str, dict]:
            # Alternate add/delete so every transaction really changes the map.
            adds: list[float] = []
            dels: list[float] = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                nft.apply(add)
                t1 = time.perf_counter()
                nft.apply(delete)
                t2 = time.perf_counter()
                adds.append((t1 - t0) * 1000)
                dels.append((t2 - t1) * 1000)
            return {
                "add": {"median_ms": round(statistics.median(adds), 3), "rounds": rounds},
                "delete": {"median_ms": round(statistics.median(dels), 3), "rounds": rounds},
            }

        r = raw_pair()
        out["raw add 1 element (empty map)"] = r["add"]
        out["raw delete 1 element (empty map)"] = r["delete"]

        for i in range(elements):
            fw.add_port_mapping(mapping(i))
        fw.ensure(force=True)
        r = raw_pair()
        out[f"raw add 1 element ({elements} in map)"] = r["add"]
        out[f"raw delete 1 element ({elements} in map)"] = r["delete"]

        fw_adds: list[float] = []
        fw_dels: list[float] = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            fw.add_port_mapping(probe)
            t1 = time.perf_counter()
            fw.remove_port_mapping(probe)
            t2 = time.perf_counter()
            fw_adds.append((t1 - t0) * 1000)
            fw_dels.append((t2 - t1) * 1000)
        out[f"Firewall.add_port_mapping ({elements} in map)"] = {
            "median_ms": round(statistics.median(fw_adds), 3),
            "rounds": rounds,
        }
        out[f"Firewall.remove_port_mapping ({elements} in map)"] = {
            "median_ms": round(statistics.median(fw_dels), 3),
            "rounds": rounds,
        }

        fw.ensure()
        out["Firewall.ensure() unchanged (genid only)"] = timed(fw.ensure, rounds)
        out[f"Firewall.in_sync() list+compare ({elements} in map)"] = timed(
            fw.in_sync, max(5, rounds // 20)
        )
        state = fw.state()
        big = type(state)(networks=tuple(networks(50)), mappings=state.mappings)
        out[f"full sync: 50 networks + {elements} mappings"] = timed(
            lambda: fw.load(big), max(5, rounds // 20)
        )
    finally:
        fw.cleanup()
        fw.close()
        nft.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--elements", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (creates a network namespace)", file=sys.stderr)
        return 2
    ns = f"cnmbench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        results = {
            name: bench_backend(name, ns, args.rounds, args.elements)
            for name in ("libnftables", "nft")
        }
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    rows = list(results["libnftables"])
    width = max(len(r) for r in rows)
    print(f"{'median per call':{width}}  {'libnftables':>12}  {'nft -j -f -':>12}  ratio")
    for row in rows:
        lib = results["libnftables"][row]["median_ms"]
        cli = results["nft"][row]["median_ms"]
        ratio = f"{cli / lib:5.1f}x" if lib else "-"
        print(f"{row:{width}}  {lib:9.3f} ms  {cli:9.3f} ms  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
