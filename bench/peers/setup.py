"""Installs the peers from Debian's packages when they are missing."""

from __future__ import annotations

import os
import subprocess

from peers.phases import say

# What each peer needs (iptables: the firewall of all three peers on Debian 12).
PACKAGES = {
    "cni": ["containernetworking-plugins", "iptables"],
    "netavark": ["netavark", "iptables"],
    "docker": ["docker.io", "iptables"],
    "docker-cnm": ["docker.io"],
}


def installed(package: str) -> bool:
    res = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return res.stdout.endswith("installed") and "not-installed" not in res.stdout


def install_peers(systems: list[str]) -> None:
    """apt-get install the missing packages (no recommends; services not started:
    Debian's docker.io would otherwise start dockerd in the root namespace where
    policy-rc.d allows it, hence RUNLEVEL=1 and a policy that says no)."""
    missing = sorted({p for s in systems for p in PACKAGES.get(s, []) if not installed(p)})
    if not missing:
        return
    say(f"installing {' '.join(missing)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    policy = "/usr/sbin/policy-rc.d"
    ours = not os.path.exists(policy)
    if ours:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# cnm bench: no service starts during the install\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        probe = subprocess.run(["apt-cache", "policy", *missing], capture_output=True, text=True)
        if "Candidate: (none)" in probe.stdout or not probe.stdout.strip():
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        res = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            say(f"apt-get install failed ({res.returncode}); the missing peers are skipped: "
                f"{res.stderr.strip()[-300:]}")  # fmt: skip
    finally:
        if ours:
            os.unlink(policy)
