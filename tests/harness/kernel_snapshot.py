"""What a test may leave behind: namespaces, root links, nftables tables, children.

Several test runs may share a machine (developers run suites side by side), so
namespaces, root-namespace links and nftables tables count only when they carry
this run's TEST_TAG: in a namespace's or table's name, in a link's name or its
alias (link names stop at 15 characters). Whatever a test or a service under
test makes must carry it (the `netns_host` fixture does; driver services get it
through CNM_NETNS_PREFIX); tests keep everything else inside namespaces they
made. Only tagged namespaces and this process's own children are removed
automatically; root links and nftables tables are reported.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

# Unique per pytest process; part of every namespace name this run creates.
TEST_TAG = f"t{os.getpid()}"
# The tag as a whole token: run t123 must not claim run t1234's things.
_TAGGED = re.compile(rf"{TEST_TAG}(?![0-9])")


def carries_tag(text: str) -> bool:
    """True when `text` (a name or an alias) carries this run's tag."""
    return _TAGGED.search(text) is not None


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


def _tagged_links() -> set[str]:
    """Root-namespace links whose name or alias carries the tag."""
    found = set()
    for line in _lines("ip", "-o", "link", "show"):
        name = line.split(": ")[1].split("@")[0]
        alias = line.split(" alias ", 1)[1].strip() if " alias " in line else ""
        if carries_tag(name) or carries_tag(alias):
            found.add(name)
    return found


def take() -> dict[str, set[str]]:
    return {
        "netns": {n for line in _lines("ip", "netns", "list") if carries_tag(n := line.split()[0])},
        "links": _tagged_links(),
        # "table <family> <name>"
        "nft": {t for t in _lines("nft", "list", "tables") if carries_tag(t.split()[-1])},
        "procs": {str(p) for p in _children(os.getpid())},
    }


def diff(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, list[str]]:
    return {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}


def describe(leftovers: dict[str, list[str]]) -> dict[str, list[str]]:
    """The leftovers with each process's command line after its PID."""

    def command(pid: str) -> str:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
        except OSError:
            return "(gone)"

    procs = [f"{pid} {command(pid)}" for pid in leftovers.get("procs", [])]
    return {**leftovers, **({"procs": procs} if procs else {})}


def cleanup(leftovers: dict[str, list[str]]) -> None:
    """Remove what a failed test left, so one failure does not cascade."""
    for pid in leftovers.get("procs", []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    for name in leftovers.get("netns", []):
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
