"""Pure statistics and parsing for the peer benchmark (unit-tested, no I/O)."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q of the samples at or below it."""
    if not values:
        raise ValueError("percentile of no samples")
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], not {q}")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Summary:
    """Latency statistics in milliseconds."""

    n: int
    p50: float
    p95: float
    p99: float
    mean: float
    min: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(seconds: Sequence[float]) -> Summary:
    ms = [s * 1000 for s in seconds]
    return Summary(
        n=len(ms),
        p50=percentile(ms, 0.5),
        p95=percentile(ms, 0.95),
        p99=percentile(ms, 0.99),
        mean=sum(ms) / len(ms),
        min=min(ms),
        max=max(ms),
    )


@dataclass(frozen=True)
class Bucket:
    """Containers first..last (1-based k) and their connect latency, ms."""

    first: int
    last: int
    p50: float
    p99: float


def buckets(seconds_by_k: Sequence[float], size: int = 100) -> list[Bucket]:
    """Latency of the k-th connect (index k-1) in buckets of `size` containers."""
    out = []
    for start in range(0, len(seconds_by_k), size):
        chunk = [s * 1000 for s in seconds_by_k[start : start + size]]
        out.append(
            Bucket(start + 1, start + len(chunk), percentile(chunk, 0.5), percentile(chunk, 0.99))
        )
    return out


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, None when either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


@dataclass(frozen=True)
class Target:
    """One line of the issue's targets: `value` (a ratio or a figure) against `limit`."""

    name: str
    value: float | None
    limit: float
    # "le": met when value <= limit; "ge": met when value >= limit.
    sense: str = "le"

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.limit if self.sense == "le" else self.value >= self.limit

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "met": self.met}


def rotation(items: Sequence[str], i: int) -> list[str]:
    """Order of the systems for the i-th container: rotated, so that no system
    always goes first (drift and caches hit every system alike)."""
    if not items:
        return []
    k = i % len(items)
    return list(items[k:]) + list(items[:k])


def count_nft_rules(ruleset_json: str) -> int:
    """Rules in the output of `nft -j list ruleset` (an empty ruleset prints nothing)."""
    if not ruleset_json.strip():
        return 0
    return sum(1 for obj in json.loads(ruleset_json).get("nftables", []) if "rule" in obj)


_ID = re.compile(r"[0-9a-f]{12,64}")


def key_patterns(keys: Sequence[str], ids: Sequence[str] = ()) -> dict[str, int]:
    """Redis keys folded into patterns: ids (12-64 hex) and the given names become <id>.

    "cnm:ep:3f…" and "cnm:ep:9a…" count as one pattern "cnm:ep:<id>".
    """
    counts: Counter[str] = Counter()
    for key in keys:
        folded = _ID.sub("<id>", key)
        for name in ids:
            folded = folded.replace(name, "<id>")
        counts[folded] += 1
    return dict(sorted(counts.items()))
