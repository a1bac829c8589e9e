"""containerd's own CNI caller (`ctr run --cni`, Debian's containerd 1.6) with cnm-cni.

containerd runs inside the test host's network namespace and in a private
mount namespace where /etc/cni/net.d holds only this test's conflist and the
CNI bin dir (Debian builds ctr with /usr/lib/cni) holds only `cnm` and
`loopback`; /run and /var/lib (libcni's cache) are private tmpfs there, /etc
an overlay, so nothing of it reaches the machine. The container is a
busybox-static rootfs.

ctr passes no capability arguments, so the conflist itself carries the
`runtimeConfig.portMappings` a CRI runtime would insert (libcni passes a
plugin's configuration through unchanged when it inserts nothing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cni_env import make_bin_dir

from clients.client import Client, IpamConfig
from harness import kernel_snapshot, netns
from harness.wait import until
from harness.world import FAST_FAILOVER, single_host

SUBNET = "10.94.0.0/24"
HOST_PORT = 18081
BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ip", "ping", "httpd", "cat", "echo", "mkdir", "sleep")
NAMESPACE = f"cnmtest{kernel_snapshot.TEST_TAG}"

pytestmark = pytest.mark.skipif(
    not (shutil.which("containerd") and shutil.which("ctr") and BUSYBOX.exists()),
    reason="needs containerd, ctr and busybox-static (scripts/setup.sh installs them)",
)

PRIVATE_MOUNTS = r"""
set -e
T="$1"; HOST="$2"
touch "$T/hostns"; mount --bind "/run/netns/$HOST" "$T/hostns"
mount -t tmpfs -o mode=755 cnmtest /run
mount -t tmpfs -o mode=755 cnmtest /var/lib
mount --bind "$T/bin" /usr/lib/cni
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$T/etc.up,workdir=$T/etc.work" /etc
mkdir -p /etc/cni/net.d
mount --bind "$T/net.d" /etc/cni/net.d
exec nsenter --net="$T/hostns" containerd --config "$T/config.toml"
"""

CONFIG = """
version = 2
root = "{t}/root"
state = "{t}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{t}/containerd.sock"
[ttrpc]
  address = "{t}/containerd.sock.ttrpc"
"""

HTTP_GET = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
print(data.decode(errors="replace"))
"""


def make_rootfs(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    for d in ("proc", "sys", "dev", "etc", "tmp", "www"):
        (path / d).mkdir()
    (path / "www" / "index.html").write_text("served by a cnm container\n")
    return path


@pytest.fixture
def world(spawn, redis_url, netns_prefix, netns_host):
    with single_host(
        spawn, redis_url, netns_host, netns_prefix, tmp_prefix="cnmctr",
        controller_env=FAST_FAILOVER,
    ) as w:  # fmt: skip
        with Client(w.controller) as cnm:
            cnm.create_network("ctrnet", subnets=[IpamConfig(subnet=SUBNET)])
        yield w


class Containerd:
    def __init__(self, spawn, t: Path, host_netns: str, controller: str) -> None:
        self.t = t
        self.host_netns = host_netns
        make_bin_dir(t / "bin", "loopback")
        (t / "net.d").mkdir()
        (t / "etc.up").mkdir()
        (t / "etc.work").mkdir()
        conflist = {
            "cniVersion": "1.0.0",
            "name": "ctrnet",
            "plugins": [
                {"type": "loopback"},
                {
                    "type": "cnm",
                    "controller": controller,
                    "runtimeConfig": {
                        "portMappings": [
                            {"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}
                        ]
                    },
                },
            ],
        }
        (t / "net.d" / "10-ctrnet.conflist").write_text(json.dumps(conflist))
        (t / "config.toml").write_text(CONFIG.format(t=t))
        self.rootfs = make_rootfs(t / "rootfs")
        self.log = open(t / "containerd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = spawn(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", PRIVATE_MOUNTS, "sh",
             str(t), host_netns],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        until(self._up, "containerd answering", timeout=30)

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"containerd exited: {(self.t / 'containerd.log').read_text()}")
        return self.ctr("version", check=False).returncode == 0

    def argv(self, *args: str) -> list[str]:
        """`ctr` inside containerd's mount and network namespaces (where the CNI
        configuration is), as a runtime on that host would run it."""
        return [
            "nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt", f"--net=/run/netns/{self.host_netns}",
            "--",
            "ctr", "--address", f"{self.t}/containerd.sock", "--namespace", NAMESPACE, *args,
        ]  # fmt: skip

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, check=check,
                              timeout=60)  # fmt: skip

    def stop(self, spawn) -> None:
        spawn.stop(self.proc)
        self.log.close()
        # runc's cgroup parent for this namespace (ctr's default /<namespace>/<id>)
        with_ns = Path("/sys/fs/cgroup") / NAMESPACE
        if with_ns.is_dir():
            for child in with_ns.iterdir():
                if child.is_dir():
                    child.rmdir()
            with_ns.rmdir()


def test_ctr_run_cni_gets_address_pings_publishes_and_del_on_task_removal(world, spawn, netns_host):
    controller = world.controller
    with Client(controller) as cnm:
        peer = cnm.create_sandbox("ctrpeer")
        peer_ip = cnm.connect("ctrnet", peer.id).ipv4_address.split("/")[0]
        baseline = sum(p.used for p in cnm.list_pools())
    ctd = Containerd(spawn, world.run_dir / "ctd", netns_host, controller)
    run = None
    try:
        script = (
            "ip -o -4 addr show dev eth0; "
            f"ping -c1 -W5 {peer_ip} >/dev/null && echo PING-OK || echo PING-FAILED; "
            "echo READY; exec httpd -f -p 80 -h /www"
        )
        run = spawn(
            ctd.argv("run", "--rm", "--cni", "--rootfs", str(ctd.rootfs),
                     "c1", "/bin/sh", "-c", script),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines = []
        deadline = time.monotonic() + 60
        while "READY" not in lines and time.monotonic() < deadline:
            line = run.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        assert "READY" in lines, f"{lines} {run.stderr.read() if run.poll() is not None else ''}"
        assert "PING-OK" in lines, lines

        # the address cnm gave is the one the container has
        with Client(controller) as cnm:
            ours = [s for s in cnm.list_sandboxes() if s.container_id == f"{NAMESPACE}-c1"]
            assert len(ours) == 1, [s.container_id for s in cnm.list_sandboxes()]
            (endpoint,) = cnm.get_sandbox(ours[0].id).endpoints
        assert any(endpoint.ipv4_address in line for line in lines), (endpoint, lines)
        assert endpoint.ipv4_address.startswith("10.94.0.")
        assert ours[0].key.startswith("/proc/") and ours[0].key.endswith("/ns/net")

        # the published port reaches busybox httpd through cnm's mapping
        page = netns.exec_in(netns_host, sys.executable, "-c", HTTP_GET, str(HOST_PORT)).stdout
        assert "served by a cnm container" in page, page

        # removing the task: ctr runs CNI DEL, and cnm holds nothing of c1 any more
        ctd.ctr("task", "kill", "--signal", "SIGKILL", "c1")
        run.wait(60)
        with Client(controller) as cnm:
            assert [s.name for s in cnm.list_sandboxes()] == ["ctrpeer"]
            assert len(cnm.list_endpoints()) == 1
            assert sum(p.used for p in cnm.list_pools()) == baseline
        assert ctd.ctr("containers", "list", "--quiet").stdout.strip() == ""
    finally:
        if run is not None and run.poll() is None:
            ctd.ctr("task", "kill", "--signal", "SIGKILL", "c1", check=False)
            try:
                run.wait(30)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
        ctd.stop(spawn)
