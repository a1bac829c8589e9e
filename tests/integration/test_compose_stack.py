"""docker-compose.yml built and run for real: Debian's dockerd, started by the
test in a network namespace of its own (the compose "host"), builds the image
from a local base and wheelhouse (no registry is needed), brings every
service up healthy, and cnmctl on this machine drives the stack through the
controller socket in the test's run directory: sandboxes get addresses and
ping, the driver container programs the namespace it runs in, survives
`docker-compose restart driver` with traffic kept, and `down` leaves nothing.

The slowest test of the suite (a minute or two once the base is cached;
debootstrap adds ~2 min the first time on a machine). Skipped, with the
reason, where dockerd, docker-compose or debootstrap is missing or the
Debian mirror cannot be reached.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from harness import netns
from harness.dockerd import Dockerd
from harness.kernel_snapshot import TEST_TAG
from harness.wait import until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What the image needs from Debian (the Dockerfile's runtime PACKAGES).
PACKAGES = (
    "python3,python3-venv,redis-server,nftables,libnftables1,iproute2,iputils-ping,"
    "conntrack,procps,kmod,util-linux,ca-certificates"
)
# Built once per machine and package list, reused by later runs.
CACHE = Path(os.environ.get("CNM_TEST_CACHE", "/var/cache/cnm-test"))
SUBNET = "10.95.0.0/24"


def _run(*argv: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def _base_tarball() -> Path:
    """A Debian bookworm rootfs with PACKAGES (debootstrap), as a tar."""
    key = hashlib.sha256(PACKAGES.encode()).hexdigest()[:12]
    tarball = CACHE / f"compose-base-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True, mode=0o700)
    rootfs = Path(tempfile.mkdtemp(prefix="cnm-base-", dir=CACHE))
    try:
        res = _run("debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
                   str(rootfs), "http://deb.debian.org/debian", timeout=900)  # fmt: skip
        if res.returncode != 0:
            pytest.skip(
                f"debootstrap could not build a base: {res.stdout[-300:]}{res.stderr[-300:]}"
            )
        tmp = tarball.with_suffix(".tmp")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tmp), "."], check=True)
        tmp.replace(tarball)
        return tarball
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def _wheelhouse() -> Path:
    """cnm's Python dependencies and build tools as wheels (from PyPI, once)."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    house = CACHE / f"wheelhouse-{key}"
    if house.exists():
        return house
    tmp = Path(tempfile.mkdtemp(prefix="wheelhouse-", dir=CACHE))
    res = _run(str(BIN / "pip"), "download", "-q", "--disable-pip-version-check", "-d", str(tmp),
               str(ROOT), "grpcio-tools", "mypy-protobuf", "setuptools>=68", "wheel")  # fmt: skip
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"cannot download cnm's wheels: {res.stderr[-300:]}")
    tmp.rename(house)
    return house


def _build_context(dest: Path, wheels: Path) -> Path:
    """The repository's tracked files (what a user's checkout has) + wheelhouse."""
    files = _run("git", "-C", str(ROOT), "ls-files", "-z").stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    shutil.copytree(wheels, dest / "wheelhouse")
    return dest


@pytest.fixture
def compose_host(spawn, netns_host):
    tools = ("dockerd", "docker", "docker-compose", "debootstrap")
    missing = [b for b in tools if not shutil.which(b)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (scripts/setup.sh installs them)")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the build context is the tracked files")
    base, wheels = _base_tarball(), _wheelhouse()
    work = Path(tempfile.mkdtemp(prefix="cnmc-"))
    # overlay2 when the kernel has overlayfs: vfs copies the rootfs per layer
    # (a 5 min build instead of 1 min on this machine).
    has_overlay = "overlay" in Path("/proc/filesystems").read_text()
    daemon = Dockerd(
        spawn,
        netns=netns_host,
        run_dir=work / "docker",
        # The driver container's /run/netns must show in this mount namespace.
        private_mounts=False,
        storage_driver="overlay2" if has_overlay else "vfs",
    )
    try:
        daemon.start()
        daemon.run("import", "-", "cnm-base:bookworm", input=base.read_bytes(), timeout=300)
        yield daemon, _build_context(work / "ctx", wheels), work
    finally:
        daemon.remove_everything()
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_compose_stack_builds_runs_survives_driver_restart_and_leaves_nothing(
    compose_host, netns_host, netns_prefix, spawn
):
    daemon, ctx, work = compose_host
    run_dir, data_dir = work / "run", work / "data"
    env = {
        **daemon.env,
        "CNM_BASE": "cnm-base:bookworm",
        "CNM_RUN_DIR": str(run_dir),
        "CNM_DATA_DIR": str(data_dir),
        "CNM_NETNS_PREFIX": netns_prefix,
        "CNM_HOST_ID": f"compose-{TEST_TAG}",
    }
    project = f"cnm{TEST_TAG}"

    def compose(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        res = _run("docker-compose", "-p", project, *args, cwd=ctx, env=env, timeout=timeout)
        assert res.returncode == 0, f"docker-compose {' '.join(args)}: {res.stderr[-2000:]}"
        return res

    def cnmctl(*args: str) -> str:
        res = _run(str(BIN / "cnmctl"), "--controller", f"unix://{run_dir}/controller.sock",
                   *args, timeout=60)  # fmt: skip
        assert res.returncode == 0, f"cnmctl {' '.join(args)}: {res.stderr}"
        return res.stdout

    def health() -> dict[str, str]:
        ids = daemon.out("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
        out = {}
        for cid in ids.split():
            fmt = '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Health.Status}}'
            name, status = daemon.out("inspect", "-f", fmt, cid).split()
            out[name] = status
        return out

    started = time.monotonic()
    compose("build")
    built = time.monotonic()
    compose("up", "-d")
    services = yaml.safe_load((ctx / "docker-compose.yml").read_text())["services"]
    until(
        lambda: health() == dict.fromkeys(services, "healthy"),
        "every compose service healthy",
        timeout=180,
    )
    print(
        f"image built in {built - started:.0f} s, stack healthy {time.monotonic() - built:.0f} s later"
    )
    try:
        cnmctl("network", "create", "--subnet", SUBNET, "cnet")
        for name in ("ca", "cb"):
            cnmctl("sandbox", "create", name)
            cnmctl("network", "connect", "cnet", name)
        a, b = json.loads(cnmctl("sandbox", "inspect", "ca", "cb"))
        ns_a = a["Key"].rsplit("/", 1)[1]
        assert ns_a.startswith(netns_prefix)  # made by the driver container, seen here
        addr_b = b["Endpoints"][0]["IPv4Address"].split("/")[0]
        assert netns.exec_in(ns_a, "ping", "-c1", "-W2", addr_b, check=False).returncode == 0
        # The driver container programs the namespace it runs in (the host's).
        links = _run("ip", "-n", netns_host, "-o", "link", "show").stdout
        assert "br-" in links

        # Traffic keeps flowing while the driver container restarts.
        pinger = spawn(
            ["ping", "-i", "0.2", "-c", "60", "-W", "1", addr_b],
            netns_name=ns_a, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            compose("restart", "driver")
            until(lambda: health().get("driver") == "healthy", "driver healthy again", timeout=120)
            out, _ = pinger.communicate(timeout=60)
        finally:
            spawn.stop(pinger, signal.SIGKILL)
        assert " 0% packet loss" in out, out
        cnmctl("sandbox", "create", "cc")
        cnmctl("network", "connect", "cnet", "cc")  # the restarted driver works

        for name in ("ca", "cb", "cc"):
            cnmctl("sandbox", "rm", name)
        cnmctl("network", "rm", "cnet")
    finally:
        compose("down", "-v", "--rmi", "local", timeout=300)
    # Nothing left in the host namespace: links, nftables tables, sandboxes.
    links = _run("ip", "-n", netns_host, "-o", "link", "show").stdout
    assert [ln.split(": ")[1] for ln in links.splitlines()] == ["lo"], links
    assert _run("ip", "netns", "exec", netns_host, "nft", "list", "tables").stdout.strip() == ""
    assert not [n for n in _run("ip", "netns", "list").stdout.split() if n.startswith(netns_prefix)]
