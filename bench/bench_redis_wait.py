"""What `?wait=1` costs: one allocating write (an EVALSHA like IPAM's) with
and without `WAIT 1` for a replica, on a primary + replica started here on
loopback (private dirs, stopped at exit). Prints p50/p99 per write in µs.

    sudo .venv/bin/python bench/bench_redis_wait.py [--writes 5000]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402

from services.store import Store  # noqa: E402

ALLOC = "return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(workdir: Path, port: int, *extra: str) -> subprocess.Popen:
    data = workdir / str(port)
    data.mkdir()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
         "--save", "", "--appendonly", "yes", "--repl-diskless-sync-delay", "0", *extra],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            if client.ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"redis on {port} did not start")


def _measure(store: Store, writes: int) -> list[float]:
    script = store.script(ALLOC)
    out = []
    for i in range(writes):
        started = time.perf_counter()
        script(keys=[store.key("bench")], args=[str(i % 64)])
        out.append((time.perf_counter() - started) * 1e6)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writes", type=int, default=5000)
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cnm-bench-wait-"))
    procs = []
    try:
        primary = _port()
        procs.append(_server(workdir, primary))
        replica = _port()
        procs.append(_server(workdir, replica, "--replicaof", "127.0.0.1", str(primary)))
        primary_client = redis.Redis(port=primary)
        deadline = time.monotonic() + 30
        while "online" not in str(primary_client.info("replication").get("slave0", "")):
            if time.monotonic() > deadline:
                raise RuntimeError("replica did not come online")
            time.sleep(0.1)
        plain = Store(f"redis://127.0.0.1:{primary}/0", prefix="bench")
        waited = Store(f"redis://127.0.0.1:{primary}/0", prefix="bench")
        waited.client.cnm_wait = waited.raw.cnm_wait = (1, 1000)  # what ?wait=1 sets
        for name, store in (("no wait", plain), ("WAIT 1", waited), ("no wait", plain)):
            lat = sorted(_measure(store, args.writes))
            print(f"{name:8} p50 {statistics.median(lat):7.1f} µs  "
                  f"p99 {lat[int(len(lat) * 0.99)]:7.1f} µs  ({args.writes} writes)")  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
