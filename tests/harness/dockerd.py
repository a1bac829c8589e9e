"""A private dockerd for tests: inside a test host's network namespace, in a
mount namespace of its own, everything under one run directory.

    nsenter --net=/run/netns/<host> -- unshare -m --propagation private -- sh -c '
        mount -t tmpfs cnm-test-run /run            # dockerd's /run is its own
        mkdir -p /run/docker/plugins
        mount --bind <run_dir>/plugins /run/docker/plugins
        exec dockerd --data-root <dir>/data --exec-root <dir>/x -H unix://<dir>/docker.sock
                     --bridge=none --iptables=false --storage-driver=vfs ...'

So dockerd finds the test's plugin sockets (<run_dir>/plugins/NAME.sock) in
the directory it always looks in, and the machine's own /run/docker is never
touched (nor another dockerd's: the API socket, data and exec roots are the
test's). The image comes from this machine's busybox-static (`docker import`
of /bin/busybox and its applet links): no registry is contacted.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from harness.wait import until

IMAGE = "cnmtest/busybox:1"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ping", "httpd", "sleep", "wget", "ip", "cat", "hostname", "ls", "echo")
INDEX = b"hello from cnm\n"


def busybox_tar() -> bytes:
    """A root filesystem: /bin/busybox, its applet links, /www/index.html."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "tmp", "www", "proc", "sys", "dev"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(os.path.realpath(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        info = tarfile.TarInfo("www/index.html")
        info.size = len(INDEX)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(INDEX))
    return buf.getvalue()


class DockerError(RuntimeError):
    """A docker CLI command failed; `stderr` is what Docker printed."""

    def __init__(self, argv: list[str], proc: subprocess.CompletedProcess) -> None:
        self.stderr = proc.stderr.strip()
        self.returncode = proc.returncode
        super().__init__(f"docker {' '.join(argv)}: exit {proc.returncode}: {self.stderr}")


class Dockerd:
    """`private_mounts=False` keeps the machine's mount namespace (no plugin
    directory of its own): what containers bind-mount with shared propagation
    (e.g. a driver container's /run/netns) is then seen by the test.
    `storage_driver="overlay2"` builds images far faster than vfs."""

    def __init__(
        self,
        spawn,
        *,
        netns: str,
        run_dir: Path,
        private_mounts: bool = True,
        storage_driver: str = "vfs",
    ) -> None:
        self.spawn = spawn
        self.netns = netns
        self.private_mounts = private_mounts
        self.storage_driver = storage_driver
        self.dir = run_dir
        self.plugins = run_dir / "plugins"
        self.sock = run_dir / "docker.sock"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> Dockerd:
        dockerd = shutil.which("dockerd")
        if dockerd is None or shutil.which("docker") is None:
            raise RuntimeError("dockerd is not installed (scripts/setup.sh installs docker.io)")
        self.plugins.mkdir(parents=True, exist_ok=True)
        d = self.dir
        (d / "daemon.json").write_text("{}")
        script = (
            "set -e; mount -t tmpfs -o mode=755 cnm-test-run /run; mkdir -p /run/docker/plugins; "
            'mount --bind "$0" /run/docker/plugins; exec "$@"'
        )
        private = ["unshare", "-m", "--propagation", "private", "--",
                   "sh", "-c", script, str(self.plugins)]  # fmt: skip
        argv = [
            "nsenter", f"--net=/run/netns/{self.netns}", "--",
            *(private if self.private_mounts else []),
            dockerd, "--config-file", str(d / "daemon.json"), "--data-root", str(d / "data"),
            "--exec-root", str(d / "x"), "--pidfile", str(d / "dockerd.pid"),
            "-H", f"unix://{self.sock}", "--bridge=none", "--iptables=false",
            "--ip6tables=false", "--userland-proxy=false", f"--storage-driver={self.storage_driver}",
            "--log-level=info",
        ]  # fmt: skip
        log = open(d / "dockerd.log", "ab")  # noqa: SIM115 - kept by the child
        self.proc = self.spawn(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        until(self._answers, "dockerd answering", timeout=timeout, interval=0.2)
        self.run("import", "-", IMAGE, input=busybox_tar())
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"dockerd exited with {self.proc.returncode}: {self.log_tail()}")
        return self.sock.exists() and self.run("version", check=False).returncode == 0

    def log_tail(self, n: int = 5) -> str:
        path = self.dir / "dockerd.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return " | ".join(lines[-n:])

    @property
    def env(self) -> dict[str, str]:
        """Environment for other clients of this daemon only (docker-compose)."""
        return {**os.environ, "DOCKER_HOST": f"unix://{self.sock}",
                "DOCKER_CONFIG": str(self.dir / "cli")}  # fmt: skip

    def run(
        self, *argv: str, check: bool = True, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """`docker -H <ours> ARGV...`; DockerError (with Docker's stderr) on failure."""
        proc = subprocess.run(
            ["docker", "-H", f"unix://{self.sock}", *argv],
            input=input,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, "DOCKER_CONFIG": str(self.dir / "cli")},
        )
        out = subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        if check and proc.returncode != 0:
            raise DockerError(list(argv), out)
        return out

    def out(self, *argv: str) -> str:
        return self.run(*argv).stdout.strip()

    def inspect(self, *argv: str) -> list[dict]:
        return json.loads(self.out(*argv, "--format", "{{json .}}").join("[]") or "[]")

    def remove_everything(self) -> list[str]:
        """Every container and user network (best effort); returns what failed."""
        errors = []
        ids = self.run("ps", "-aq", check=False).stdout.split()
        if ids:
            r = self.run("rm", "-f", *ids, check=False)
            if r.returncode:
                errors.append(r.stderr.strip())
        nets = self.run("network", "ls", "-q", "--filter", "type=custom", check=False)
        for net in nets.stdout.split():
            r = self.run("network", "rm", net, check=False)
            if r.returncode:
                errors.append(r.stderr.strip())
        return errors

    def stop(self, timeout: float = 30) -> None:
        """Stop dockerd by its PID and wait for it (it stops containerd first)."""
        if self.proc is not None:
            self.spawn.stop(self.proc, timeout=timeout)
        if not self.private_mounts:
            # Mounts dockerd made in the machine's namespace (exec-root/netns/...).
            inside = f"{self.dir}/"
            mounts = [
                line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            ]
            for target in sorted(
                (m for m in mounts if m.startswith(inside)), key=len, reverse=True
            ):
                subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(self.dir / "data", ignore_errors=True)
        shutil.rmtree(self.dir / "x", ignore_errors=True)
