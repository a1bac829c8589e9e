"""The command line that runs a program inside a sandbox, as `ip netns exec` would.

The program gets the sandbox's network namespace AND its hosts and
resolv.conf files: a private mount namespace (`unshare --mount`, propagation
private, so nothing leaks back to the host) in which the sandbox's files are
bind-mounted over /etc/hosts and /etc/resolv.conf, the way `ip netns exec`
mounts /etc/netns/<name>/*. So `cnmctl sandbox exec a -- getent hosts b`
resolves through the sandbox's resolver, as a container would.
"""

from __future__ import annotations

import os
import shutil

# Runs in the new mount namespace: bind the files given ("" = keep the host's),
# then enter the network namespace and become the command.
_SCRIPT = (
    'if [ -n "$1" ]; then mount --bind "$1" /etc/hosts || exit 126; fi; '
    'if [ -n "$2" ]; then mount --bind "$2" /etc/resolv.conf || exit 126; fi; '
    'key="$3"; shift 3; exec nsenter --net="$key" -- "$@"'
)


def _file(path: str) -> str:
    return path if path and os.path.isfile(path) else ""


def exec_argv(key: str, hosts_path: str, resolv_conf_path: str, command: list[str]) -> list[str]:
    """argv to exec; raises LookupError naming a missing tool."""
    tools = {name: shutil.which(name) for name in ("unshare", "nsenter", "mount")}
    missing = [name for name, path in tools.items() if not path]
    if missing:
        raise LookupError(", ".join(missing))
    hosts, resolv = _file(hosts_path), _file(resolv_conf_path)
    if not hosts and not resolv:
        return [str(tools["nsenter"]), f"--net={key}", "--", *command]
    return [
        str(tools["unshare"]),
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        _SCRIPT,
        "cnm-sandbox-exec",
        hosts,
        resolv,
        key,
        *command,
    ]
