"""cnm's own Prometheus metrics (--metrics-listen) read around a series of
operations: per-operation Redis round trips, server time per RPC and driver
step time, from the difference of two scrapes. `parse` and `per_op` are pure."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

RPC = "cnm_rpc_duration_seconds"
STEP = "cnm_driver_step_duration_seconds"
ROUND_TRIPS = "cnm_redis_round_trips_total"


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _by(samples: Samples, name: str, label: str) -> dict[str, float]:
    """Sum of `name` per value of `label` (other labels summed over)."""
    out: dict[str, float] = {}
    for (n, labels), v in samples.items():
        if n == name:
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def per_op(before: Samples, after: Samples, n: int) -> dict[str, Any]:
    """What `n` operations cost one service, per operation: Redis round trips,
    calls and mean server ms by RPC method, calls and ms by driver step."""
    rt = sum(_delta(_by(after, ROUND_TRIPS, ""), _by(before, ROUND_TRIPS, "")).values())
    calls = _delta(_by(after, f"{RPC}_count", "method"), _by(before, f"{RPC}_count", "method"))
    secs = _delta(_by(after, f"{RPC}_sum", "method"), _by(before, f"{RPC}_sum", "method"))
    steps = _delta(_by(after, f"{STEP}_count", "step"), _by(before, f"{STEP}_count", "step"))
    step_s = _delta(_by(after, f"{STEP}_sum", "step"), _by(before, f"{STEP}_sum", "step"))
    calls.pop("Check", None)  # health probes are listed as RPCs too; kept apart below
    return {
        "redis_round_trips": round(rt / n, 1),
        "rpc": {m: {"calls": round(c / n, 2), "ms": round(secs.get(m, 0) * 1e3 / n, 2)}
                for m, c in sorted(calls.items())},
        "steps": {s: {"count": round(c / n, 2), "ms": round(step_s.get(s, 0) * 1e3 / n, 2)}
                  for s, c in sorted(steps.items())},
    }  # fmt: skip


def lines(per_service: dict[str, dict[str, Any]]) -> list[str]:
    """Report lines, one per service: round trips, RPC ms, step ms per operation."""
    out = []
    for service, d in per_service.items():
        if "error" in d:
            out.append(f"      {service}: {d['error']}")
            continue
        rpcs = ", ".join(f"{m} {v['ms']:.1f} ms x{v['calls']:g}" for m, v in d["rpc"].items())
        steps = ", ".join(f"{s} {v['ms']:.1f} ms x{v['count']:g}" for s, v in d["steps"].items())
        out.append(
            f"      {service}: Redis round trips {d['redis_round_trips']:g}; served {rpcs or '-'}"
            + (f"; steps {steps}" if steps else "")
        )
    return out
