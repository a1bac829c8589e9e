"""Figures for the IPAM allocation engine: in-process BitSequence and its Redis/Lua twin.

    .venv/bin/python bench/bench_bitseq.py [--redis-url URL] [--seed N]

Without --redis-url a private redis-server is started on a unix socket in a temporary
directory and stopped (by its PID) at the end. Latencies are client-side round trips
(EVALSHA over a unix socket); "server" is Redis's own usec_per_call for EVALSHA.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from ipam_service.bitseq import BitSequence
from ipam_service.bitseq_redis import RedisBitSequence
from services.errors import Exhausted

SLASH16 = 2**16
SLASH64 = 2**64


def timed(n: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return time.perf_counter() - start


def report(label: str, n: int, seconds: float) -> None:
    print(f"  {label:<52} {n / seconds:>12,.0f} ops/s  {seconds / n * 1e6:8.2f} us/op")


def deep_size(seq: BitSequence) -> int:
    """Bytes allocated to build `seq` from its serialized form (its lists and ints)."""
    data = seq.to_bytes()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    copy = BitSequence.from_bytes(data)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    del copy
    return sum(s.size_diff for s in after.compare_to(before, "filename"))


def fragmented(size: int, free_fraction: float, rng: random.Random) -> BitSequence:
    """A full sequence with a random `free_fraction` of its bits released."""
    seq = BitSequence(size)
    for _ in range(size):
        seq.allocate()
    for ordinal in rng.sample(range(size), int(size * free_fraction)):
        seq.unset(ordinal)
    return seq


def bench_in_process(rng: random.Random) -> None:
    print("In-process BitSequence (pure Python)")
    seq = BitSequence(SLASH16, serial=True)
    report("allocate all of a /16, serial, from empty", SLASH16, timed(SLASH16, seq.allocate))
    seq = BitSequence(SLASH16)
    report("allocate all of a /16, lowest-free, from empty", SLASH16, timed(SLASH16, seq.allocate))

    for fraction in (0.5, 0.01):
        seq = fragmented(SLASH16, fraction, rng)
        runs, free = seq.run_count, seq.free_count
        report(
            f"refill a /16 with {fraction:.0%} randomly free ({runs} runs)",
            free, timed(free, seq.allocate),
        )  # fmt: skip
    seq = fragmented(SLASH16, 0.5, rng)
    seq_serial = BitSequence.from_bytes(seq.to_bytes())
    free = seq.free_count
    report("  same 50 % case, serial", free, timed(free, lambda: seq_serial.allocate(serial=True)))

    print("Memory")
    full = BitSequence(SLASH16)
    for _ in range(SLASH16):
        full.allocate()
    print(f"  full /16: {len(full.to_bytes())} bytes serialized, {deep_size(full)} bytes in memory")
    half = fragmented(SLASH16, 0.5, rng)
    print(
        f"  /16 with random 50 % free ({half.run_count} runs): {len(half.to_bytes()):,} bytes "
        f"serialized, {deep_size(half):,} bytes in memory"
    )
    v6 = BitSequence(SLASH64, serial=True)
    for _ in range(100_000):
        v6.allocate()
    print(
        f"  /64 with 100,000 serial allocations: {len(v6.to_bytes())} bytes serialized, "
        f"{deep_size(v6)} bytes in memory"
    )
    v6r = BitSequence(SLASH64)
    for ordinal in {rng.getrandbits(64) for _ in range(100_000)}:
        v6r.set(ordinal)
    print(
        f"  /64 with 100,000 random allocations ({v6r.run_count:,} runs): "
        f"{len(v6r.to_bytes()):,} bytes serialized, {deep_size(v6r):,} bytes in memory"
    )


@contextmanager
def private_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed; pass --redis-url")
    workdir = Path(tempfile.mkdtemp(prefix="cnm-bench-redis-"))
    sock = workdir / "redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.02)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def server_usec_per_call(client: redis.Redis) -> float:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec_per_call", 0.0))


def latencies(n: int, fn: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def show(client: redis.Redis, label: str, samples: list[float]) -> None:
    q = statistics.quantiles(samples, n=100)
    print(
        f"  {label:<46} {len(samples) / sum(samples):>7,.0f} allocs/s  p50 {q[49] * 1e6:5.0f} us"
        f"  p99 {q[98] * 1e6:5.0f} us  server {server_usec_per_call(client):5.1f} us/call"
    )


def bench_redis(url: str, rng: random.Random) -> None:
    client = redis.Redis.from_url(url)
    print(f"Redis/Lua twin: one EVALSHA per serial allocation, owner recorded ({url})")
    seq = RedisBitSequence(client, "bench:{p}:bits", owners_key="bench:{p}:owners")
    seq.delete()
    seq.create(SLASH16, serial=True, reserved=[0, SLASH16 - 1])
    seq.allocate(owner="warm-up")  # loads the script
    client.config_resetstat()
    show(
        client, "/16 from empty (first 20,000)", latencies(20_000, lambda: seq.allocate(owner="e"))
    )

    full = BitSequence(SLASH16, serial=True)
    for _ in range(SLASH16):
        full.allocate()
    full_bytes = full.to_bytes()
    for fraction, rounds in ((0.01, 10), (0.5, 1)):
        # Each round: a full /16 with random holes written with a plain SET (not timed,
        # not an EVALSHA), then every hole refilled through the script (timed).
        client.config_resetstat()
        samples: list[float] = []
        runs = 0
        for _ in range(rounds):
            holed = BitSequence.from_bytes(full_bytes)
            for ordinal in rng.sample(range(SLASH16), int(SLASH16 * fraction)):
                holed.unset(ordinal)
            runs = max(runs, holed.run_count)
            client.set(seq.key, holed.to_bytes())
            samples += latencies(holed.free_count, lambda: seq.allocate(owner="e"))
        try:
            seq.allocate()
            raise SystemExit("expected the pool to be full")
        except Exhausted:
            pass
        show(
            client, f"/16 {100 - fraction * 100:.0f} % full, random holes (<= {runs} runs)", samples
        )

    big = RedisBitSequence(client, "bench:{v6}:bits", owners_key="bench:{v6}:owners")
    big.delete()
    v6 = BitSequence(SLASH64, serial=True)
    for _ in range(100_000):
        v6.allocate()
    big.create_from(v6)
    client.config_resetstat()
    show(
        client,
        "/64 after 100,000 serial allocations",
        latencies(5_000, lambda: big.allocate(owner="e")),
    )
    # Worst case on purpose: random (not serial) bits all over a /64 leave 200,000 runs,
    # a 2.4 MB value that every call reads and rewrites.
    scattered = BitSequence(SLASH64, serial=True)
    for ordinal in {rng.getrandbits(64) for _ in range(100_000)}:
        scattered.set(ordinal)
    big.delete()
    big.create_from(scattered)
    client.config_resetstat()
    show(client, "/64 with 100,000 random bits (200,001 runs)", latencies(300, big.allocate))
    seq.delete()
    big.delete()
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", help="use this Redis instead of a private one")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    bench_in_process(rng)
    if args.redis_url:
        bench_redis(args.redis_url, rng)
    else:
        with private_redis() as url:
            bench_redis(url, rng)


if __name__ == "__main__":
    main()
