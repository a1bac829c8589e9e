"""Cost of a Join and a Leave through osl, in namespaces this script creates and removes.

    sudo .venv/bin/python bench/bench_osl.py [--iterations 200]

A "host" namespace with a bridge (IPv4 + IPv6 gateways) and a sandbox
namespace. Join = veth with its peer created inside the sandbox, enslaved,
MAC, MTU, IPv4 + IPv6 addresses, link up, two default routes. Leave = delete
the pair, either synchronously or with `delete_link_async` (what the caller
waits for is the synchronous part; the kernel work happens in the background).
Also shown: what opening a netlink handle in a namespace costs, osl's way
(disposable thread + setns) against pyroute2's `IPRoute(netns=...)` (fork).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyroute2 import IPRoute  # noqa: E402

from driver_service import osl  # noqa: E402
from driver_service.osl import Route  # noqa: E402
from driver_service.osl.rtnl import rtnl  # noqa: E402


def stats(label: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{label:<46} median {statistics.median(ms):7.2f} ms   p99 {p99:7.2f} ms   n={len(ms)}")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def join(host: str, sandbox: str, i: int) -> osl.VethPair:
    return osl.create_veth(
        f"vb{i}",
        "eth0",
        peer_netns=sandbox,
        netns=host,
        bridge="br-bench",
        mtu=1500,
        peer_mac="02:42:0a:3c:00:02",
        addresses=["10.60.0.2/24", "fd60::2/64"],
        routes=[Route("0.0.0.0/0", "10.60.0.1"), Route("::/0", "fd60::1")],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    n = parser.parse_args().iterations

    tag = uuid.uuid4().hex[:6]
    host, sandbox = f"cnmt-bench-h-{tag}", f"cnmt-bench-s-{tag}"
    ns_create: list[float] = []
    try:
        ns_create.append(timed(lambda: osl.create_namespace(host)))
        ns_create.append(timed(lambda: osl.create_namespace(sandbox)))
        osl.create_bridge(
            "br-bench", netns=host, mtu=1500, addresses=["10.60.0.1/24", "fd60::1/64"]
        )

        def open_osl() -> None:
            with rtnl(sandbox) as ipr:
                ipr.link("get", index=1)

        def open_fork() -> None:
            with IPRoute(netns=sandbox, flags=0) as ipr:
                ipr.link("get", index=1)

        stats("open handle in a netns: osl (thread + setns)", [timed(open_osl) for _ in range(n)])
        stats("open handle in a netns: IPRoute(netns=) fork", [timed(open_fork) for _ in range(50)])

        joins, leaves = [], []
        for i in range(n):
            joins.append(timed(lambda i=i: join(host, sandbox, i)))
            leaves.append(timed(lambda i=i: osl.delete_link(f"vb{i}", netns=host)))
        stats("join (veth in place + addrs + routes + up)", joins)
        stats("leave, synchronous delete", leaves)

        joins, leaves = [], []
        start = time.perf_counter()
        for i in range(n):
            joins.append(timed(lambda i=i: join(host, sandbox, i)))
            leaves.append(
                timed(
                    lambda i=i: osl.delete_link_async(
                        f"vb{i}", netns=host, peer_name="eth0", peer_netns=sandbox
                    )
                )
            )
        loop = time.perf_counter() - start
        drain = timed(lambda: osl.wait_for_background_deletes(120))
        stats("join, while background deletes run", joins)
        stats("leave, delete_link_async (caller's wait)", leaves)
        print(
            f"{'async loop: total wall time':<46} {loop * 1000:7.0f} ms, "
            f"then {drain * 1000:.0f} ms to drain the background queue"
        )
    finally:
        osl.wait_for_background_deletes(120)
        deletes = [timed(lambda name=name: osl.delete_namespace(name)) for name in (host, sandbox)]
    stats("namespace create (bind-mounted, lo up)", ns_create)
    stats("namespace delete", deletes)


if __name__ == "__main__":
    main()
