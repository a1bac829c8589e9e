"""Two cnmd on one machine, each with its own run dir, data dir (Redis) and
network namespace, sharing /run/netns and the namespace prefix: neither one's
start-up sweep removes the other's sandbox namespaces."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from test_cnmd import Dirs, needs_all_services, start_cnmd

from harness import kernel_snapshot, netns
from harness.stack import BIN, short_tmp


@pytest.fixture
def second_host() -> Iterator[str]:
    name = f"cnmtest-{kernel_snapshot.TEST_TAG}-second"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)


def cnmctl(dirs: Dirs, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "cnmctl"), "--controller", f"unix://{dirs.run}/controller.sock", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )


def sandbox_netns(dirs: Dirs, name: str) -> str:
    res = cnmctl(dirs, "sandbox", "inspect", name)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)[0]["Key"].rsplit("/", 1)[1]


@needs_all_services
def test_two_cnmd_side_by_side_each_keep_their_sandboxes(
    netns_host, second_host, netns_prefix, spawn
):
    env = {"CNM_NETNS_PREFIX": netns_prefix, "CNM_LOG_FORMAT": "text"}
    bases = [short_tmp("cnmdA"), short_tmp("cnmdB")]
    a, b = (Dirs(base / "run", base / "data") for base in bases)
    try:
        first = start_cnmd(spawn, a, netns_host, env)
        assert cnmctl(a, "sandbox", "create", "sa").returncode == 0
        key_a = sandbox_netns(a, "sa")
        assert key_a.startswith(netns_prefix)
        # The second cnmd's driver sweeps orphans at start-up: its Redis knows
        # nothing of "sa", whose namespace has the same prefix.
        start_cnmd(spawn, b, second_host, env)
        assert cnmctl(b, "sandbox", "create", "sb").returncode == 0
        key_b = sandbox_netns(b, "sb")
        # And the first one restarted sweeps again.
        spawn.stop(first)
        start_cnmd(spawn, a, netns_host, env)
        names = netns.run("ip", "netns", "list").stdout
        assert key_a in names and key_b in names
        assert sandbox_netns(a, "sa") == key_a and sandbox_netns(b, "sb") == key_b
        for dirs, name in ((a, "sa"), (b, "sb")):
            assert cnmctl(dirs, "sandbox", "rm", name).returncode == 0
        names = netns.run("ip", "netns", "list").stdout
        assert key_a not in names and key_b not in names
    finally:
        spawn.stop_all()
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)
