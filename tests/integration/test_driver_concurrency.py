"""Many sandboxes joining and leaving one network at once: every hosts file ends
consistent, every interface is eth0, nothing is left; and the latency of the calls
(printed with `pytest -s`, recorded as test properties)."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from driver_world import T, hosts_text, links, netns_name, ping, shared_host

from cnm.driver.v1 import driver_pb2 as pb
from harness.wait import eventually

N = 16


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    with shared_host(redis_server, netns_prefix) as h:
        yield h


@pytest.fixture
def host(world):
    yield world
    world.reset_or_recover()


LEGACY_HOSTS = {"cnm.network.legacy_hosts": "true"}


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, (time.perf_counter() - start) * 1e3


def test_concurrent_joins_and_leaves_on_one_network(host, record_property):
    # Peers in every hosts file is the legacy behaviour (cnm-dns answers names
    # now); this test is about that writer under concurrent joins and leaves.
    nid = host.network("10.70.0.0/24", name="busy", options=LEGACY_HOSTS)
    sandboxes = [host.sandbox(f"s{i}") for i in range(N)]
    eids = [host.endpoint(nid, f"10.70.0.{i + 2}/24", name=f"s{i}") for i in range(N)]

    with ThreadPoolExecutor(8) as pool:
        joins = list(
            pool.map(lambda i: timed(host.join, nid, eids[i], sandboxes[i].sandbox_id), range(N))
        )
    assert {j.interface_name for j, _ in joins} == {"eth0"}
    for i, sb in enumerate(sandboxes):
        hosts_text(sb, has=tuple(f"10.70.0.{k + 2}\ts{k} s{k}.busy" for k in range(N) if k != i))
    assert ping(sandboxes[0], f"10.70.0.{N + 1}") and ping(sandboxes[-1], "10.70.0.2")

    with ThreadPoolExecutor(8) as pool:
        leaves = list(
            pool.map(lambda i: timed(host.leave, nid, eids[i], sandboxes[i].sandbox_id), range(N))
        )
    for sb in sandboxes:
        assert links(netns_name(sb)) == ["lo"]
        hosts_text(sb, lacks=tuple(f"\ts{k} s{k}.busy" for k in range(N)))
    assert eventually(lambda: links(host.host_ns) == ["lo", f"br-{nid[:12]}"] or
                      set(links(host.host_ns)) == {"lo", f"br-{nid[:12]}"})  # fmt: skip

    join_ms = sorted(ms for _, ms in joins)
    leave_ms = sorted(ms for _, ms in leaves)
    record_property("join_ms_median_8_parallel", round(statistics.median(join_ms), 1))
    record_property("leave_ms_median_8_parallel", round(statistics.median(leave_ms), 1))
    print(
        f"\n{N} joins, 8 in parallel: median {statistics.median(join_ms):.1f} ms, "
        f"max {join_ms[-1]:.1f} ms; leaves: median {statistics.median(leave_ms):.1f} ms, "
        f"max {leave_ms[-1]:.1f} ms"
    )


def test_sequential_call_latency(host, record_property):
    nid = host.network("10.71.0.0/24")
    rounds = 10
    times: dict[str, list[float]] = {
        k: [] for k in ("sandbox", "endpoint", "join", "leave", "delete")
    }
    for i in range(rounds):
        sb, ms = timed(host.sandbox, f"q{i}")
        times["sandbox"].append(ms)
        eid, ms = timed(host.endpoint, nid, f"10.71.0.{i + 2}/24")
        times["endpoint"].append(ms)
        times["join"].append(timed(host.join, nid, eid, sb.sandbox_id)[1])
        times["leave"].append(timed(host.leave, nid, eid, sb.sandbox_id)[1])
        req = pb.DeleteSandboxRequest(sandbox_id=sb.sandbox_id)
        times["delete"].append(timed(lambda r=req: host.stub.DeleteSandbox(r, timeout=T))[1])
    times["delete_joined"] = []
    for i in range(rounds):
        sb, _ = host.attach(nid, f"10.71.0.{i + 100}/24", f"r{i}")
        req = pb.DeleteSandboxRequest(sandbox_id=sb.sandbox_id)
        times["delete_joined"].append(timed(lambda r=req: host.stub.DeleteSandbox(r, timeout=T))[1])
    summary = {k: round(statistics.median(v), 1) for k, v in times.items()}
    for k, v in summary.items():
        record_property(f"{k}_ms_median", v)
    print(f"\nmedian latency over {rounds} rounds (ms): {summary}")
