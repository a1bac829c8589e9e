"""What a test may leave behind: namespaces, root links, nftables tables, children.

Several test runs may share a machine (developers run suites side by side), so
namespaces count only when their name carries this run's TEST_TAG: every
namespace a test or a service under test makes must carry it (the
`netns_host` fixture does; driver services get it through CNM_NETNS_PREFIX).
Only tagged namespaces and this process's own children are removed
automatically; root links and nftables tables are reported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

# Unique per pytest process; part of every namespace name this run creates.
TEST_TAG = f"t{os.getpid()}"


def _lines(*argv: str) -> list[str]:
    res = subprocess.run(argv, capture_output=True, text=True)
    return [line for line in res.stdout.splitlines() if line.strip()]


def _children(pid: int) -> set[int]:
    """All live descendants of `pid` (zombies excluded), read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


def take() -> dict[str, set[str]]:
    return {
        "netns": {
            n for line in _lines("ip", "netns", "list") if TEST_TAG in (n := line.split()[0])
        },
        "links": {line.split(": ")[1].split("@")[0] for line in _lines("ip", "-o", "link", "show")},
        "nft": set(_lines("nft", "list", "tables")),
        "procs": {str(p) for p in _children(os.getpid())},
    }


def diff(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, list[str]]:
    return {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}


def cleanup(leftovers: dict[str, list[str]]) -> None:
    """Remove what a failed test left, so one failure does not cascade."""
    for pid in leftovers.get("procs", []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    for name in leftovers.get("netns", []):
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
