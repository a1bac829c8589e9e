"""Namespace helpers for tests (the `ip` tool is fine here: this is not a hot path)."""

from __future__ import annotations

import subprocess


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def create(name: str) -> None:
    run("ip", "netns", "add", name)
    run("ip", "-n", name, "link", "set", "lo", "up")


def delete(name: str) -> None:
    run("ip", "netns", "delete", name, check=False)


def exec_in(
    name: str, *argv: str, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv],
        check=check,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ping(name: str, address: str, count: int = 1, wait: float = 2) -> bool:
    """True when `address` answers from inside namespace `name`."""
    res = exec_in(name, "ping", "-c", str(count), "-W", str(wait), "-q", address, check=False)
    return res.returncode == 0
