"""Benchmark: every address of a /16 through cnm-ipam's gRPC API, 1 and 4 client processes.

Prints allocations/s, p50 and p99 per phase:
  fill        every address of a fresh /16 (65,534), until RESOURCE_EXHAUSTED
  empty       the allocations of that fill made while the pool was < 1 % full
  99% full    the allocations of that fill made while the pool was > 99 % full
  refill 1%   a random 1 % (655 addresses) released all over the full pool, then
              allocated again: the fragmented, 99 %-full case that makes scanning
              allocators slow

Two last lines per client count: the CPU time per allocation of the fill spent by
the clients, redis-server and each cnm-ipam (from /proc: where the time goes), and
the services' RSS before the fill and after the pool is released (a leak shows).

By default it starts its own redis-server and cnm-ipam (unix sockets in a temp
directory) as cnmd starts them (Redis with its append-only file, fsync every
second; cnm-ipam with its default options) and stops them by PID afterwards; `--ipam ADDR...` benchmarks running
services instead; `--replicas N` starts N cnm-ipam processes on one Redis, the
clients spread over them round-robin. Clients are separate processes (their own
GIL), as real callers are.

    .venv/bin/python bench/bench_ipam.py [--clients 1 4] [--prefix 16] [--replicas 1]
"""

from __future__ import annotations

import argparse
import ipaddress
import multiprocessing as mp
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from cnm.ipam.v1 import ipam_pb2 as pb
from cnm.ipam.v1 import ipam_pb2_grpc

BIN = Path(sys.executable).parent
T = 10


# As a cnm caller's channel (services/channel.py dial): no client-side retries.
CHANNEL_OPTIONS = [("grpc.enable_retries", 0)]


def worker(address: str, pool_id: str, start: Any, ready: Any, out: Any) -> None:
    """Allocate until the pool is exhausted; report (address, latency) pairs.

    One persistent channel and one request message, as a caller that allocates
    for its endpoints would keep; the deadline is the only per-call option."""
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    stub = ipam_pb2_grpc.IpamStub(channel)
    request = pb.RequestAddressRequest(pool_id=pool_id, owner=f"bench-{os.getpid()}")
    stub.GetDefaultAddressSpaces(pb.GetDefaultAddressSpacesRequest(), timeout=T)  # connect
    ready.release()
    start.wait()
    got: list[tuple[str, float]] = []
    cpu0 = time.process_time()
    t_first = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        try:
            reply = stub.RequestAddress(request, timeout=T)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            break
        got.append((reply.address, time.perf_counter() - t0))
    out.put((got, t_first, time.perf_counter(), time.process_time() - cpu0))
    channel.close()


def run_clients(
    addresses: list[str], pool_id: str, clients: int
) -> tuple[list[tuple[str, float]], float, float]:
    """All allocations made by `clients` processes started together, the wall time and
    the clients' CPU seconds.

    Client i talks to replica i mod len(addresses).
    """
    ctx = mp.get_context("spawn")
    start, ready, out = ctx.Event(), ctx.Semaphore(0), ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(addresses[i % len(addresses)], pool_id, start, ready, out))
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    for _ in procs:  # every client connected: they really start together
        if not ready.acquire(timeout=60):
            raise RuntimeError("a client did not get ready")
    start.set()
    results = []
    while len(results) < clients:
        try:
            results.append(out.get(timeout=1))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a client failed (see its traceback above)") from None
    for p in procs:
        p.join()
    got = [g for r in results for g in r[0]]
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    return got, wall, sum(r[3] for r in results)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(label: str, clients: int, samples: list[float], rate: float | None) -> str:
    rate_s = f"{rate:10.0f}" if rate is not None else f"{'-':>10}"
    return (
        f"{label:<12} {clients:>7} {len(samples):>8} {rate_s} "
        f"{statistics.median(samples) * 1e3:9.3f} {pct(samples, 0.99) * 1e3:9.3f}"
    )


def bench(
    addresses: list[str], clients: int, prefix: int, space: str, pids: dict[str, int] | None = None
) -> list[str]:
    """The table's rows; with `pids` (name -> PID of a service process), a last line with
    the CPU time per allocation of the fill spent by the clients and by each of them."""
    channel = grpc.insecure_channel(addresses[0])
    stub = ipam_pb2_grpc.IpamStub(channel)
    subnet = ipaddress.ip_network(f"10.{100 + clients}.0.0/{prefix}")
    pool_id = stub.RequestPool(
        pb.RequestPoolRequest(address_space=space, pool=str(subnet), owner="bench"), timeout=T
    ).pool_id
    capacity = subnet.num_addresses - 2
    lines = []

    cpu0 = {name: cpu_seconds(pid) for name, pid in (pids or {}).items()}
    rss0 = {name: rss_mib(pid) for name, pid in (pids or {}).items()}
    got, wall, clients_cpu = run_clients(addresses, pool_id, clients)
    cpu = {"clients": clients_cpu}
    cpu.update({name: cpu_seconds(pid) - cpu0[name] for name, pid in (pids or {}).items()})
    assert len(got) == capacity == len({a for a, _ in got}), "not every address exactly once"
    base = int(subnet.network_address)

    def fill_level(cidr: str) -> float:
        return (int(ipaddress.ip_interface(cidr).ip) - base) / capacity

    lines.append(row("fill", clients, [lat for _, lat in got], len(got) / wall))
    empty = [lat for a, lat in got if fill_level(a) < 0.01]
    full = [lat for a, lat in got if fill_level(a) > 0.99]
    lines.append(row("empty", clients, empty, None))
    lines.append(row("99% full", clients, full, None))

    # Free a random 1 % all over the pool, then take it back: fragmented and 99 % full.
    released = random.Random(clients).sample([a for a, _ in got], capacity // 100)
    for a in released:
        stub.ReleaseAddress(pb.ReleaseAddressRequest(pool_id=pool_id, address=a), timeout=T)
    info = stub.GetPool(pb.GetPoolRequest(pool_id=pool_id), timeout=T)
    assert info.free == len(released)
    again, wall, _ = run_clients(addresses, pool_id, clients)
    assert sorted(a for a, _ in again) == sorted(released), "refill gave other addresses"
    lines.append(row("refill 1%", clients, [lat for _, lat in again], len(again) / wall))
    stub.ReleasePool(pb.ReleasePoolRequest(pool_id=pool_id), timeout=T)
    channel.close()
    if pids:
        per = "  ".join(f"{name} {seconds / len(got) * 1e6:.0f}" for name, seconds in cpu.items())
        lines.append(f"  CPU µs per allocation of the fill: {per}")
        rss = "  ".join(
            f"{name} {rss0[name]:.1f} -> {rss_mib(pid):.1f}" for name, pid in pids.items()
        )
        lines.append(f"  RSS MiB before the fill -> after the refill and ReleasePool: {rss}")
    return lines


class Stack:
    """A private redis-server and cnm-ipam, stopped by PID."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cnm-bench-"))
        self.procs: list[subprocess.Popen] = []

    def start(self, replicas: int, space: str) -> list[str]:
        redis_sock = self.dir / "redis.sock"
        self.procs.append(
            subprocess.Popen(
                ["redis-server", "--port", "0", "--unixsocket", str(redis_sock), "--save", "",
                 "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.dir)],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not redis_sock.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        addresses = [f"unix://{self.dir}/ipam-{i}.sock" for i in range(replicas)]
        for address in addresses:
            self.procs.append(
                subprocess.Popen(
                    [str(BIN / "cnm-ipam"), "--listen", address, "--redis-url",
                     f"unix://{redis_sock}", "--log-level", "warning",
                     "--address-spaces", space],
                )
            )  # fmt: skip
        for address in addresses:
            with grpc.insecure_channel(address) as ch:
                grpc.channel_ready_future(ch).result(timeout=15)
        return addresses

    @property
    def pids(self) -> dict[str, int]:
        """redis-server and each cnm-ipam, by name."""
        names = ["redis-server"] + [f"cnm-ipam-{i}" for i in range(len(self.procs) - 1)]
        return {name: proc.pid for name, proc in zip(names, self.procs, strict=True)}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--ipam", metavar="ADDR", nargs="+", help="benchmark these running replicas instead"
    )
    p.add_argument(
        "--replicas", type=int, default=1, help="cnm-ipam processes to start (default 1)"
    )
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    p.add_argument("--prefix", type=int, default=16, help="pool prefix length (default 16)")
    p.add_argument(
        "--space",
        default="bench",
        help="address space of the bench pools (an --ipam given must declare it)",
    )
    args = p.parse_args()
    stack = None if args.ipam else Stack()
    try:
        addresses = args.ipam or stack.start(args.replicas, args.space)  # type: ignore[union-attr]
        print(
            f"cnm-ipam x{len(addresses)} at {' '.join(addresses)}; pool /{args.prefix}; "
            f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'phase':<12} {'clients':>7} {'allocs':>8} {'allocs/s':>10} {'p50 ms':>9} {'p99 ms':>9}"
        )
        pids = stack.pids if stack else None
        for clients in args.clients:
            for line in bench(addresses, clients, args.prefix, args.space, pids):
                print(line, flush=True)
    finally:
        if stack:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
