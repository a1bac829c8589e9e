"""Benchmark: the embedded resolver (cnm-dns), and what it saves the driver at join time.

Builds its own one-host stack: redis-server, cnm-ipam, cnm-controller on unix
sockets in a temp directory, cnm-driver and cnm-dns inside a host namespace
made for the run (tagged `cnmbdns<pid>`); everything is removed by PID and by
name afterwards, also on Ctrl-C. Traffic stays inside the run's namespaces.

Prints:
  queries    cached-name lookups from inside a sandbox (UDP to 127.0.0.11):
             p50/p99 of sequential queries, and queries/s with N concurrent
             clients (each its own socket in the sandbox); cnm-dns CPU per query
  peers      connect and disconnect of one probe sandbox, p50/p99, with k = 100
             and k = 1,000 peers joined to the network, in two modes:
               dns     the default: peers through cnm-dns, only the probe's own
                       files written
               legacy  network option cnm.network.legacy_hosts=true: every
                       peer's hosts file rewritten on each join and leave (the
                       previous writer), to compare
             plus the driver's CPU time per connect+disconnect cycle (its idle
             background rate, measured just before, subtracted)

    .venv/bin/python bench/bench_dns.py [--peers 100 1000] [--samples 40] [--queries 3000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from dnslib import DNSRecord
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clients.client import Client, IpamConfig  # noqa: E402
from dns_service.netns_socket import in_namespace  # noqa: E402

BIN = Path(sys.executable).parent
TAG = f"cnmbdns{os.getpid()}"
HOST = f"{TAG}-host"
CLK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(-(-q * len(ordered) // 1)) - 1)]


def ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 0.5) * 1000:7.2f} ms  p99 {percentile(values, 0.99) * 1000:7.2f} ms"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def wait_serving(address: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{address} not SERVING")


class Stack:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cnmbdns-", dir="/tmp"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.netns = HOST

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - kept by the child
        proc = subprocess.Popen(
            argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )  # fmt: skip
        self.procs[name] = proc
        return proc

    def start(self) -> None:
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        sock = self.dir / "redis.sock"
        self.spawn("redis", ["redis-server", "--port", "0", "--unixsocket", str(sock),
                             "--save", "", "--appendonly", "no", "--dir", str(self.dir)])  # fmt: skip
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        url = f"unix://{sock}"
        common = ["--redis-url", url, "--log-format", "text", "--log-level", "warning"]
        enter = ["nsenter", f"--net=/run/netns/{self.netns}", "--"]
        addr = {n: f"unix://{self.dir}/{n}.sock" for n in ("ipam", "controller", "driver", "dns")}
        (self.dir / "resolv.conf").write_text("# no upstream: nothing leaves the run\n")
        argv = {
            "ipam": [str(BIN / "cnm-ipam"), "--listen", addr["ipam"], *common],
            "driver": [*enter, str(BIN / "cnm-driver"), "--listen", addr["driver"], *common,
                       "--host-id", HOST, "--state-dir", str(self.dir / "driver")],
            "dns": [*enter, str(BIN / "cnm-dns"), "--listen", addr["dns"], *common,
                    "--host-id", HOST, "--host-resolv-conf", str(self.dir / "resolv.conf")],
            "controller": [str(BIN / "cnm-controller"), "--listen", addr["controller"], *common,
                           "--ipam", addr["ipam"]],
        }  # fmt: skip
        for name in ("ipam", "driver", "dns", "controller"):
            proc = self.spawn(name, argv[name], env={"CNM_NETNS_PREFIX": f"{TAG}x-"})
            wait_serving(addr[name], proc)
        self.controller = addr["controller"]

    def stop(self) -> None:
        for name in ("controller", "dns", "driver", "ipam", "redis"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(TAG):
                subprocess.run(["ip", "netns", "delete", name], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def query_socket(key: str) -> socket.socket:
    s = in_namespace(key, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    s.settimeout(2)
    s.connect(("127.0.0.11", 53))
    return s


def one_query(s: socket.socket, packet: bytes) -> None:
    s.send(packet)
    reply = DNSRecord.parse(s.recv(4096))
    assert reply.rr, "no answer"


def bench_queries(stack: Stack, key: str, name: str, n: int, clients: int) -> None:
    packet = DNSRecord.question(name, "A").pack()
    s = query_socket(key)
    one_query(s, packet)  # warm
    lat = []
    dns_pid = stack.procs["dns"].pid
    cpu0 = cpu_seconds(dns_pid)
    for _ in range(n):
        t0 = time.perf_counter()
        one_query(s, packet)
        lat.append(time.perf_counter() - t0)
    cpu = cpu_seconds(dns_pid) - cpu0
    s.close()
    print(f"queries   sequential, 1 client, {n} x {name!r}: {ms(lat)}  "
          f"({n / sum(lat):,.0f} q/s; cnm-dns CPU {cpu / n * 1e6:.0f} us/query)")  # fmt: skip

    stop = threading.Event()
    counts = [0] * clients

    def worker(i: int) -> None:
        sock = query_socket(key)
        while not stop.is_set():
            one_query(sock, packet)
            counts[i] += 1
        sock.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    print(f"queries   {clients} concurrent clients (one process), 3 s: "
          f"{sum(counts) / took:,.0f} queries/s")  # fmt: skip


def grow(c: Client, net: str, names: list[str], workers: int = 8) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda n: c.connect(net, n), names))


def idle_cpu_rate(pid: int, seconds: float = 3.0) -> float:
    """CPU seconds per second a process spends with nothing asked of it."""
    cpu0, w0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - cpu0) / (time.monotonic() - w0)


def answering(keys: list[str], name: str) -> int:
    """How many of these sandboxes get an answer for `name` (each has its own sockets)."""
    packet = DNSRecord.question(name, "A").pack()
    ok = 0
    for key in keys:
        try:
            with query_socket(key) as s:
                one_query(s, packet)
            ok += 1
        except (OSError, AssertionError):
            pass
    return ok


def settle(pid: int, idle_rate: float, timeout: float = 120.0) -> None:
    """Wait until the process is back to its idle CPU rate (its background work done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and idle_cpu_rate(pid, 0.5) > idle_rate + 0.05:
        pass


def bench_peers(
    stack: Stack,
    c: Client,
    net: str,
    ks: list[int],
    samples: int,
    idle_rate: float,
    check_keys: list[str] | None = None,
) -> None:
    probe = "probe"
    joined = 0
    driver_pid = stack.procs["driver"].pid
    for k in ks:
        grow(c, net, [f"p{i}" for i in range(joined, k)])
        joined = k
        settle(driver_pid, idle_rate)  # a legacy writer's backlog from growing
        if check_keys:
            answered = answering(check_keys[:k], "p0")
            print(f"peers     {net:6} k={k:5}: {answered}/{k} sandboxes answered by cnm-dns")
        connect, disconnect = [], []
        cpu0, w0 = cpu_seconds(driver_pid), time.monotonic()
        for _ in range(samples):
            t0 = time.perf_counter()
            c.connect(net, probe)
            t1 = time.perf_counter()
            c.disconnect(net, probe)
            connect.append(t1 - t0)
            disconnect.append(time.perf_counter() - t1)
        settle(driver_pid, idle_rate)  # the background writer finishes its files
        cpu = cpu_seconds(driver_pid) - cpu0 - idle_rate * (time.monotonic() - w0)
        print(f"peers     {net:6} k={k:5}: connect {ms(connect)} | disconnect {ms(disconnect)} | "
              f"driver CPU {cpu / samples * 1000:6.1f} ms/cycle (idle "
              f"{idle_rate * 1000:.0f} ms/s subtracted)")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--modes", nargs="+", default=["dns", "legacy"], choices=["dns", "legacy"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_dns: needs root (namespaces)", file=sys.stderr)
        return 2
    stack = Stack()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        stack.start()
        with Client(stack.controller, timeout=60) as c:
            k_max = max(args.peers)
            print(f"load {os.getloadavg()[0]:.1f}; creating {k_max + 1} sandboxes ...", flush=True)
            with ThreadPoolExecutor(8) as pool:
                names = ["probe", *(f"p{i}" for i in range(k_max))]
                sbs = list(pool.map(lambda n: c.create_sandbox(n, host=HOST), names))
            nets = {"dns": ("dns", {}), "legacy": ("legacy", {"cnm.network.legacy_hosts": "true"})}
            for i, mode in enumerate(args.modes):
                name, options = nets[mode]
                c.create_network(name, options=options,
                                 subnets=[IpamConfig(subnet=f"10.{180 + i}.0.0/16")])  # fmt: skip
            if "dns" in args.modes:
                c.connect("dns", "p0")
                c.connect("dns", "probe")
                key = sbs[0].key
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    try:
                        one_query(query_socket(key), DNSRecord.question("p0", "A").pack())
                        break
                    except (OSError, AssertionError):
                        time.sleep(0.05)
                bench_queries(stack, key, "p0", args.queries, args.clients)
                c.disconnect("dns", "probe")
                c.disconnect("dns", "p0")
            # The driver's own background work (heartbeat, firewall watch), before any join.
            idle = idle_cpu_rate(stack.procs["driver"].pid)
            keys = [sb.key for sb in sbs[1:]]  # p0, p1, ...: every peer asks in dns mode
            for mode in args.modes:
                check = keys if mode == "dns" else None
                bench_peers(stack, c, nets[mode][0], sorted(args.peers), args.samples, idle, check)
            print(f"load {os.getloadavg()[0]:.1f}; cleaning up ...", flush=True)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
