"""Runs inside a peer's "host" namespace: executes commands and times them there.

Started as `nsenter --net=/run/netns/<host> python agent.py`, it reads one JSON
request per line on stdin and answers one JSON line per request on stdout,
tagged with the request's id. Requests run on threads, so a parallel client can
keep several in flight. Timing is taken here, around the plugin executions
only, so the pipe to the benchmark costs the peer nothing, as a runtime that
execs plugins itself would see it.

Requests:
  {"id": 1, "op": "chain", "steps": [{"argv": [...], "env": {...}, "stdin": {...},
                                      "prev_result": true}, ...]}
      runs each step; a step with "prev_result" gets the previous step's JSON
      output as stdin["prevResult"] (CNI chaining). Answers {"seconds", "rc",
      "stdout", "stderr"}; stops at the first failing step.
      With "lock": a path, the whole chain runs under an exclusive flock of it
      (waiting for it is part of the time).
  {"id": 2, "op": "tcp", "host": "...", "port": N}
      connects, reads until EOF; answers {"data": "..."} or {"error": "..."}.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

_out_lock = threading.Lock()


def chain(steps: list[dict[str, Any]], lock: str = "") -> dict[str, Any]:
    started = time.perf_counter()
    if lock:
        # As Podman runs netavark: one call at a time per host, under a file lock.
        with open(lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            answer = _chain(steps)
        answer["seconds"] = time.perf_counter() - started
        return answer
    return _chain(steps)


def _chain(steps: list[dict[str, Any]]) -> dict[str, Any]:
    prev: Any = None
    started = time.perf_counter()
    rc, out, err = 0, "", ""
    for step in steps:
        stdin = step.get("stdin")
        if isinstance(stdin, dict):
            if step.get("prev_result") and prev is not None:
                stdin = {**stdin, "prevResult": prev}
            stdin = json.dumps(stdin)
        proc = subprocess.run(
            step["argv"],
            input=stdin or "",
            capture_output=True,
            text=True,
            env={**os.environ, **step.get("env", {})},
            check=False,
        )
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
        if rc != 0:
            break
        if out.strip().startswith("{"):
            prev = json.loads(out)
    return {"seconds": time.perf_counter() - started, "rc": rc, "stdout": out, "stderr": err}


def tcp(host: str, port: int) -> dict[str, Any]:
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            s.settimeout(3)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return {"data": data.decode(errors="replace")}
    except OSError as e:
        return {"error": f"{type(e).__name__}: {e}"}


def handle(request: dict[str, Any]) -> None:
    try:
        if request["op"] == "chain":
            answer = chain(request["steps"], request.get("lock", ""))
        elif request["op"] == "tcp":
            answer = tcp(request["host"], int(request["port"]))
        else:
            answer = {"error": f"unknown op {request['op']!r}"}
    except Exception as e:  # reported to the benchmark, which raises it there
        answer = {"error": f"{type(e).__name__}: {e}"}
    answer["id"] = request["id"]
    line = json.dumps(answer)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            threading.Thread(target=handle, args=(json.loads(line),), daemon=True).start()


if __name__ == "__main__":
    main()
