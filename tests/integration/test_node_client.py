"""The README's Node.js example (clients/examples/node) against a real stack:
a client built from protos/ alone creates, lists, watches, connects, reads a
refusal's ErrorInfo and BadRequest, and cleans up. Runs when node is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import test_cli
from test_cli import ok

EXAMPLE = Path(__file__).resolve().parents[2] / "clients" / "examples" / "node"
NODE = shutil.which("node")

# test_cli's fixture: a real ipam + driver (in its own namespace) + controller.
stack = test_cli.stack

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def _modules() -> None:
    if not (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        # scripts/setup.sh installs them; a bare checkout installs them here.
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, check=True, timeout=300,
            capture_output=True,
        )  # fmt: skip


def test_node_client_from_protos_alone(stack):
    _modules()
    res = subprocess.run(
        [str(NODE), "cnm_example.js", "nodeex"],
        cwd=EXAMPLE,
        env={"CNM_CONTROLLER": stack.controller, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    steps = {s["step"]: s for s in map(json.loads, res.stdout.splitlines())}
    assert steps["network"]["name"] == "nodeex-net" and len(steps["network"]["id"]) == 64
    assert steps["list"]["names"] == ["nodeex-net"] and int(steps["list"]["revision"]) >= 1
    assert steps["connect"] == {
        "step": "connect",
        "ipv4": "10.88.0.9/24",
        "state": "ENDPOINT_STATE_JOINED",
        "interface": "eth0",
    }
    assert steps["watch"]["first"] == "EVENT_TYPE_WATCH_STARTED"
    assert "EVENT_TYPE_ENDPOINT_JOINED" in steps["watch"]["types"]
    refused = steps["refused"]
    assert refused["code"] == "INVALID_ARGUMENT"
    assert refused["reason"] == "INVALID_IPV4_ADDRESS"
    assert "ipv4_address" in refused["fields"]
    assert "cleanup" in steps
    # Nothing left behind by the example.
    assert ok(stack, "network", "ls", "-q") == "" and ok(stack, "sandbox", "ls", "-q") == ""
