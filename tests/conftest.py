"""Shared test harness.

- `redis_server` / `redis_url`: a private redis-server on a unix socket per
  session, flushed before each test that asks for it.
- `netns_host`: a fresh network namespace ("a host") per test, removed after.
- `spawn`: starts a process (optionally inside a namespace) and stops it by PID.
- an autouse guard that fails a test which leaves a namespace, a root-namespace
  link, an nftables table (those carrying this run's tag) or a child process behind.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import kernel_snapshot, netns  # noqa: E402
from harness.redis_proc import RedisProcess  # noqa: E402
from harness.spawner import Spawner  # noqa: E402

IS_ROOT = os.geteuid() == 0

# The machine's own cnm settings (a shell that exported CNM_CONTROLLER or
# CNM_REDIS_URL for a cnmd it runs) must not reach the code or the services
# under test: every test says what it wants.
for _name in [n for n in os.environ if n.startswith("CNM_")]:
    del os.environ[_name]


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "netns" in parts:
            item.add_marker(pytest.mark.netns)
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if ("netns" in parts or "integration" in parts) and not IS_ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root for network namespaces"))


# --- redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private redis-server on a unix socket; yields its `unix://` URL."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (scripts/setup.sh installs it)")
    server = RedisProcess(persistent=False, extra=("--notify-keyspace-events", "KEA"))
    try:
        yield server.start().url
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


# --- namespaces and processes --------------------------------------------------------------


@pytest.fixture(scope="session")
def netns_prefix() -> str:
    """Prefix for namespaces made by services under test (give it as CNM_NETNS_PREFIX)."""
    return f"cnm-{kernel_snapshot.TEST_TAG}-"


@pytest.fixture
def netns_host() -> Iterator[str]:
    """A fresh, uniquely named network namespace with `lo` up; removed after the test."""
    name = f"cnmtest-{kernel_snapshot.TEST_TAG}-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    try:
        yield name
    finally:
        netns.delete(name)


@pytest.fixture
def spawn() -> Iterator[Spawner]:
    spawner = Spawner()
    try:
        yield spawner
    finally:
        spawner.stop_all()


# --- leftover guard ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_leftovers(request):
    if not IS_ROOT:
        yield
        return
    before = kernel_snapshot.take()
    yield
    after = kernel_snapshot.take()
    leftovers = kernel_snapshot.diff(before, after)
    if leftovers:
        # Name each process before it is killed: a bare PID says nothing afterwards.
        named = kernel_snapshot.describe(leftovers)
        kernel_snapshot.cleanup(leftovers)
        pytest.fail(f"test left behind: {named}", pytrace=False)
