"""Namespaces the benchmark makes, the agent that runs commands inside a host
namespace, and the kernel look-ups of the leftover and correctness checks.

Every name starts with the run's tag (`cnmb<6 hex>-`), so what a run made is
found again, and removed, by that prefix only.
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from peers.stats import count_nft_rules

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
AGENT = Path(__file__).with_name("agent.py")


def run(argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 60):
    return subprocess.run(
        argv, input=input, capture_output=True, text=True, check=check, timeout=timeout
    )


def add_namespaces(names: list[str]) -> None:
    """`ip netns add` for many names in one process (bind-mounted under /run/netns)."""
    for chunk in _chunks(names, 200):
        run(["ip", "-batch", "-"], input="".join(f"netns add {n}\n" for n in chunk), timeout=120)


def delete_namespaces(names: list[str]) -> None:
    """Best effort: a name already gone is fine."""
    present = [n for n in names if (NETNS_DIR / n).exists()]
    for chunk in _chunks(present, 200):
        run(
            ["ip", "-force", "-batch", "-"],
            input="".join(f"netns del {n}\n" for n in chunk),
            check=False,
            timeout=300,
        )


def tagged_namespaces(prefix: str) -> list[str]:
    return sorted(p.name for p in NETNS_DIR.glob(f"{prefix}*")) if NETNS_DIR.exists() else []


def in_netns(path: str, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={path}", "--", *argv]


def nft_rules(host_ns: str) -> int:
    """Rules in every nftables table of the namespace (iptables-nft's included)."""
    out = run(in_netns(f"/run/netns/{host_ns}", ["nft", "-j", "list", "ruleset"])).stdout
    return count_nft_rules(out)


def links(netns_path: str) -> list[str]:
    out = run(in_netns(netns_path, ["ip", "-j", "link", "show"])).stdout
    return [link["ifname"] for link in json.loads(out or "[]")]


def ping_each(targets: list[tuple[str, str]], timeout_s: int = 1) -> list[tuple[str, str]]:
    """(netns path, address) pairs whose one ping got no answer."""
    failed = []
    for path, address in targets:
        res = run(
            in_netns(path, ["ping", "-n", "-q", "-c1", f"-W{timeout_s}", address]),
            check=False,
            timeout=10,
        )
        if res.returncode != 0:
            failed.append((path, address))
    return failed


def start_listener(netns_path: str, port: int, reply: str) -> subprocess.Popen:
    """A TCP server in a sandbox namespace that answers `reply` to each connection.

    Prints "ready" once listening, so the caller knows when to connect.
    """
    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('0.0.0.0', {port})); s.listen(8); print('ready', flush=True)\n"
        "s.settimeout(15)\n"
        "while True:\n"
        "    c,_=s.accept(); c.sendall(sys.argv[1].encode()); c.close()\n"
    )
    proc = subprocess.Popen(
        in_netns(netns_path, [sys.executable, "-c", code, reply]),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def _chunks(items: list[str], size: int):
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class Agent:
    """The agent process in one host namespace; thread-safe, calls can overlap."""

    def __init__(self, host_ns: str) -> None:
        self.proc = subprocess.Popen(
            in_netns(f"/run/netns/{host_ns}", [sys.executable, str(AGENT)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            answer = json.loads(line)
            with self._lock:
                fut = self._pending.pop(answer["id"])
            fut.set_result(answer)
        with self._lock:
            for fut in self._pending.values():
                fut.set_exception(RuntimeError("agent exited"))
            self._pending.clear()

    def call(self, timeout: float = 120, **request: Any) -> dict[str, Any]:
        fut: Future = Future()
        with self._lock:
            if self.proc.poll() is not None:
                raise RuntimeError("agent exited")
            request["id"] = next(self._ids)
            self._pending[request["id"]] = fut
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        answer = fut.result(timeout)
        if "error" in answer and request["op"] != "tcp":
            raise RuntimeError(f"agent: {answer['error']}")
        return answer

    def chain(self, steps: list[dict[str, Any]], lock: str = "") -> dict[str, Any]:
        return self.call(op="chain", steps=steps, lock=lock)

    def tcp(self, host: str, port: int) -> dict[str, Any]:
        return self.call(op="tcp", host=host, port=port)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
