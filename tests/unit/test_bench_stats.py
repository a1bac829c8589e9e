"""The peer benchmark's pure parts: statistics, nft rule counting, Redis key
folding, py-spy stack folding, bench_ipam rows, targets and the table."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from peers import metrics, profile, report  # noqa: E402
from peers.stats import (  # noqa: E402
    Target,
    buckets,
    count_nft_rules,
    key_patterns,
    percentile,
    ratio,
    rotation,
    summarize,
)

# ------------------------------------------------------------------ percentiles


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param(list(range(1, 101)), 0.5, 50, id="median-of-1..100-is-50"),
        pytest.param(list(range(1, 101)), 0.99, 99, id="p99-of-1..100-is-99"),
        pytest.param(list(range(1, 101)), 1.0, 100, id="p100-is-max"),
        pytest.param(list(range(1, 201)), 0.99, 198, id="p99-of-200-is-198th"),
        pytest.param([7.0], 0.99, 7.0, id="single-sample"),
        pytest.param([3, 1, 2], 0.5, 2, id="unsorted-input"),
    ],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


@pytest.mark.parametrize(
    ("values", "q"),
    [
        pytest.param([], 0.5, id="no-samples"),
        pytest.param([1.0], 0, id="q-zero"),
        pytest.param([1.0], 1.5, id="q-above-one"),
    ],
)
def test_percentile_refuses_bad_input(values, q):
    with pytest.raises(ValueError):
        percentile(values, q)


def test_summarize_reports_milliseconds():
    s = summarize([0.001 * i for i in range(1, 101)])
    assert (s.n, s.p50, s.p95, s.p99, s.min, s.max) == (100, 50, 95, 99, 1, 100)
    assert s.mean == pytest.approx(50.5)


def test_buckets_cover_every_k_and_keep_a_short_last_bucket():
    seconds = [0.001] * 100 + [0.002] * 100 + [0.010] * 50
    out = buckets(seconds, 100)
    assert [(b.first, b.last) for b in out] == [(1, 100), (101, 200), (201, 250)]
    assert [b.p50 for b in out] == [1, 2, 10]


def test_ratio_is_none_when_a_side_is_missing():
    assert ratio(5.0, 20.0) == 0.25
    assert ratio(None, 1.0) is None
    assert ratio(1.0, None) is None
    assert ratio(1.0, 0.0) is None


@pytest.mark.parametrize(
    ("value", "limit", "sense", "met"),
    [
        pytest.param(0.2, 0.25, "le", True, id="ratio-under-limit"),
        pytest.param(0.3, 0.25, "le", False, id="ratio-over-limit"),
        pytest.param(3500.0, 3000, "ge", True, id="throughput-over-floor"),
        pytest.param(2500.0, 3000, "ge", False, id="throughput-under-floor"),
        pytest.param(None, 1, "le", None, id="missing-value-is-not-judged"),
    ],
)
def test_target_verdict(value, limit, sense, met):
    assert Target("t", value, limit, sense).met is met


def test_rotation_puts_every_system_first_in_turn():
    systems = ["cnm", "cni", "netavark"]
    firsts = [rotation(systems, i)[0] for i in range(6)]
    assert firsts == ["cnm", "cni", "netavark"] * 2
    assert all(sorted(rotation(systems, i)) == sorted(systems) for i in range(6))
    assert rotation([], 3) == []


# ------------------------------------------------------------------ kernel and Redis views


def test_count_nft_rules_counts_rules_only():
    ruleset = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "cnm"}},
            {"chain": {"family": "inet", "table": "cnm", "name": "fwd"}},
            {"set": {"family": "inet", "table": "cnm", "name": "ports"}},
            {"rule": {"family": "inet", "table": "cnm", "chain": "fwd", "expr": []}},
            {"rule": {"family": "ip", "table": "nat", "chain": "POSTROUTING", "expr": []}},
        ]
    }
    assert count_nft_rules(json.dumps(ruleset)) == 2
    assert count_nft_rules("") == 0


def test_key_patterns_fold_ids_and_run_names():
    ids = ["a" * 64, "b" * 64]
    keys = [f"cnm:ep:{ids[0]}", f"cnm:ep:{ids[1]}", "cnm:hosts", "cnm:host:cnmb12ab34-host"]
    assert key_patterns(keys, ids=["cnmb12ab34"]) == {
        "cnm:ep:<id>": 2,
        "cnm:host:<id>-host": 1,
        "cnm:hosts": 1,
    }


# ------------------------------------------------------------------ py-spy folding

CTRL = "ControllerServicer.Connect (controller_service/servicer.py:150)"


def _line(*frames: str, count: int) -> str:
    root = ["Thread.run (threading.py:975)", "_call_behavior (site-packages/grpc/_server.py:608)"]
    return ";".join(root + list(frames)) + f" {count}\n"


def test_fold_counts_only_handler_stacks_and_credits_the_rpc_maker():
    lines = [
        _line(CTRL, "DriverClient.join (controller_service/drivers_client.py:160)",
              "DeadlineInterceptor.x (services/channel.py:48)",
              "_blocking (site-packages/grpc/_channel.py:1152)", count=30),
        _line(CTRL, "IpamClient._call (controller_service/ipam_client.py:44)",
              "DeadlineInterceptor.x (services/channel.py:48)", count=5),
        _line(CTRL, "Tx._get (controller_service/repository.py:111)",
              "_Redis.execute_command (services/store.py:40)",
              "SocketBuffer._read (site-packages/redis/_parsers/socket.py:64)", count=7),
        _line(CTRL, "to_json (controller_service/models.py:335)", count=3),
        _line("_worker (concurrent/futures/thread.py:83)", count=500),  # idle pool thread
    ]  # fmt: skip
    cats, handlers = profile.fold(
        lines, profile.HANDLERS["connect"]["controller"], profile.CATEGORIES["controller"]
    )
    assert handlers == {"ControllerServicer.Connect": 45}
    assert cats == {
        "waits for driver service RPCs": 30,
        "waits for IPAM RPCs": 5,
        "Redis (records, intents, events)": 7,
        "controller Python (validation, models, conversion)": 3,
    }


def test_fold_driver_picks_the_deepest_specific_frame():
    join = "DriverServicer.Join (driver_service/servicer.py:60)"
    lines = [
        _line(join, "BridgeDriver.join (driver_service/drivers/bridge/driver.py:262)",
              "create_veth (driver_service/osl/links.py:219)",
              "rtnl (driver_service/osl/rtnl.py:84)", count=4),
        _line(join, "Firewall.publish (driver_service/firewall/firewall.py:400)",
              "read_listeners (driver_service/ports/listeners.py:100)",
              "_read (driver_service/ports/listeners.py:88)", count=9),
        _line("DriverServicer.Leave (driver_service/servicer.py:70)", count=50),  # other op
    ]  # fmt: skip
    cats, handlers = profile.fold(
        lines, profile.HANDLERS["connect"]["driver"], profile.CATEGORIES["driver"]
    )
    assert handlers == {"DriverServicer.Join": 13}
    assert cats == {
        "netlink handle in a namespace (open)": 4,
        "/proc/net/tcp{,6} read (listener check)": 9,
    }


def test_busy_samples_skip_a_parked_background_thread():
    writer = "Sandboxes._write_pending (driver_service/sandbox.py:160)"
    lines = [
        _line(writer, "Sandboxes._write_sid (driver_service/sandbox.py:180)", count=12),
        _line(writer, "Condition.wait (threading.py:320)", count=900),
        _line(writer, "wait (threading.py:331)", count=50),
        _line(CTRL, count=7),
    ]
    assert profile.busy_samples(lines, "Sandboxes._write_pending") == 12


def test_fold_splits_the_health_probe_from_other_driver_rpcs():
    probe = "DriverClient.probe (controller_service/drivers_client.py:76)"
    lines = [
        _line(CTRL, "Context.reachable (controller_service/context.py:104)", probe,
              "DeadlineInterceptor.x (services/channel.py:48)", count=6),
        _line(CTRL, "DriverClient.join (controller_service/drivers_client.py:160)", count=4),
    ]  # fmt: skip
    cats, _ = profile.fold(
        lines, profile.HANDLERS["connect"]["controller"], profile.CATEGORIES["controller"]
    )
    assert cats == {"waits for the driver's health probe": 6, "waits for driver service RPCs": 4}


# ------------------------------------------------------------------ IPAM rows, targets, table


@pytest.mark.parametrize(
    ("line", "phase", "per_s"),
    [
        pytest.param("fill               4    65534       3126     1.225     3.076", "fill", 3126.0,
                     id="fill-with-rate"),
        pytest.param("99% full           1      656          -     0.455     0.533", "99% full", None,
                     id="phase-with-space-no-rate"),
    ],
)  # fmt: skip
def test_parse_ipam_line(line, phase, per_s):
    row = report.parse_ipam_line(line)
    assert (row["phase"], row["per_s"]) == (phase, per_s)
    assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]


def _results() -> dict:
    def lat(p50: float) -> dict:
        return {"n": 200, "p50": p50, "p95": p50 * 1.2, "p99": p50 * 1.5}

    return {
        "meta": {"started": "now", "quick": False, "clients": 8, "machine": {},
                 "skipped": {"docker": "dockerd not installed"}, "failed": {}},
        "connect": {
            "cnm": {"connect": lat(5.0), "disconnect": lat(4.0), "rules_connected": 21},
            "netavark": {"connect": lat(40.0), "disconnect": lat(80.0), "rules_connected": 900},
            "cni": {"connect": lat(50.0), "disconnect": lat(150.0), "rules_connected": 1400},
        },
        "flatness": {"cnm": {"buckets": [{"first": 1, "last": 100, "p50": 5, "p99": 10},
                                         {"first": 901, "last": 1000, "p50": 5, "p99": 14}],
                             "rules_by_k": [[0, 21], [100, 21], [1000, 21]]}},
        "ipam": {"prefix": 16, "rows": [
            {"phase": "empty", "clients": 1, "allocs": 600, "per_s": None, "p50_ms": 0.4, "p99_ms": 1},
            {"phase": "99% full", "clients": 4, "allocs": 600, "per_s": None, "p50_ms": 0.9, "p99_ms": 2},
            {"phase": "fill", "clients": 4, "allocs": 65534, "per_s": 2500.0, "p50_ms": 1.2, "p99_ms": 3},
        ]},
    }  # fmt: skip


def test_resources_print_rss_at_both_endpoint_counts_and_their_ratio():
    res = {
        "endpoints": 1000,
        "rss_kib": {"cnm-ipam": 40960},
        "redis_used_memory": 2**20,
        "redis_used_memory_rss": 2**21,
        "redis_keys": 7,
        "rss_kib_by_endpoints": [[100, {"cnm-ipam": 40960}], [1000, {"cnm-ipam": 51200}]],
        "rss_kib_after_disconnect": {"cnm-ipam": 46080},
    }
    lines = report._resources({"resources": res})
    assert "   RSS at   100 endpoints: cnm-ipam 40.0 MiB" in lines
    assert "   RSS at  1000 endpoints: cnm-ipam 50.0 MiB" in lines
    assert "   RSS after disconnecting all: cnm-ipam 45.0 MiB" in lines
    assert lines[-1] == "   RSS ratio 1000 / 100 endpoints (target: flat): cnm-ipam 1.25"


def test_targets_from_results():
    results = {
        **_results(),
        "kernel_floor": {report.FLOOR_JOIN: {"p50": 2.5}, report.FLOOR_LEAVE: {"p50": 2.0}},
        "parallel": {"cnm": {"connect": {"per_s": 150.0}, "connect_one_client": {"per_s": 100.0}}},
        "resources": {"rss_kib_by_endpoints": [
            [100, {"cnm-driver": 70000, "redis-server": 10000}],
            [1000, {"cnm-driver": 73500, "redis-server": 20000}],
        ]},
    }  # fmt: skip
    got = {t.name: (round(t.value, 3), t.met) for t in report.targets(results)}
    assert got == {
        "cnm connect p50 / netavark's": (0.125, True),
        "cnm connect p50 / CNI's": (0.1, True),
        "cnm connect p50 / kernel floor (bench_osl join)": (2.0, False),
        "cnm disconnect p50 / netavark's": (0.05, True),
        "cnm disconnect p50 / kernel floor (bench_osl leave)": (2.0, False),
        "cnm connects/s, 8 clients / 1 client": (1.5, False),
        "cnm-driver RSS at 1000 / at 100 endpoints": (1.05, True),
        "cnm connect p99 at k=901..1000 / at k=1..100": (1.4, False),
        "cnm rules at k=K minus at the first bucket": (0.0, True),
        "IPAM p50 ms, worst of empty/99% full, 1 and 4 clients": (0.9, True),
        "IPAM allocations/s, 4 clients (whole /16)": (2500.0, False),
    }


def test_table_shows_skips_ratios_and_verdicts():
    text = report.table(_results())
    assert "SKIPPED docker: dockerd not installed" in text
    netavark_row = next(line for line in text.splitlines() if line.startswith("netavark "))
    assert re.search(r"\b0\.12\b", netavark_row) and re.search(r"\b0\.05\b", netavark_row)
    assert re.search(r"IPAM allocations/s.*NOT MET", text)
    assert re.search(r"cnm connect p50 / CNI's .* met", text)


_BEFORE = """\
cnm_rpc_duration_seconds_count{code="OK",method="Join"} 2.0
cnm_rpc_duration_seconds_sum{code="OK",method="Join"} 0.02
cnm_rpc_duration_seconds_count{code="OK",method="Check"} 5.0
cnm_rpc_duration_seconds_sum{code="OK",method="Check"} 0.001
cnm_redis_round_trips_total 100.0
"""
_AFTER = """\
cnm_rpc_duration_seconds_count{code="OK",method="Join"} 6.0
cnm_rpc_duration_seconds_sum{code="OK",method="Join"} 0.06
cnm_rpc_duration_seconds_count{code="ALREADY_EXISTS",method="Join"} 2.0
cnm_rpc_duration_seconds_sum{code="ALREADY_EXISTS",method="Join"} 0.004
cnm_rpc_duration_seconds_count{code="OK",method="Check"} 9.0
cnm_rpc_duration_seconds_sum{code="OK",method="Check"} 0.002
cnm_driver_step_duration_seconds_count{step="netlink"} 12.0
cnm_driver_step_duration_seconds_sum{step="netlink"} 0.024
cnm_redis_round_trips_total 140.0
"""


def test_metrics_per_operation_come_from_the_difference_of_two_scrapes():
    got = metrics.per_op(metrics.parse(_BEFORE), metrics.parse(_AFTER), 4)
    assert got == {
        "redis_round_trips": 10.0,
        "rpc": {"Join": {"calls": 1.5, "ms": 11.0}},  # both codes; health checks left out
        "steps": {"netlink": {"count": 3.0, "ms": 6.0}},
    }
    [line] = metrics.lines({"driver": got})
    assert "Redis round trips 10; served Join 11.0 ms x1.5; steps netlink 6.0 ms x3" in line


def test_profile_osl_batch_frames_count_for_the_module_that_sent_them():
    compiled = [(re.compile(p), name) for p, name in profile.CATEGORIES["driver"]]
    join = [
        "join (driver_service/manager.py:300)",
        "create_veth (driver_service/osl/links.py:250)",
        "send (driver_service/osl/batch.py:110)",
    ]
    tombstone = [
        "delete_link_async (driver_service/osl/reaper.py:90)",
        "run (driver_service/osl/batch.py:130)",
    ]
    assert profile.categorize(join, compiled) == "netlink: veth, addresses, routes"
    assert profile.categorize(tombstone, compiled) == "netlink: tombstone before async delete"
