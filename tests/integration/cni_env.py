"""Drive CNI plugins the way libcni does, and check results against the spec.

`LibCni` executes a network configuration list (SPEC.md section 3): for ADD
each plugin in order with the previous plugin's result as `prevResult`, for
DEL in reverse with the cached ADD result, CHECK in order with it, GC and
STATUS on every plugin; the request configuration of each plugin is derived
as the spec says (cniVersion and name inserted, runtimeConfig from the
plugin's capabilities, `capabilities` removed). Plugins run as executables
found in a bin dir, with CNI_* variables and the configuration on stdin,
inside the test's "host" namespace (the runtime's networking domain).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
SYSTEM_PLUGINS = Path("/usr/lib/cni")


def make_bin_dir(path: Path, *system: str) -> Path:
    """A CNI bin dir holding the `cnm` plugin (installed by `cnm-cni install`)
    and copies of Debian's reference plugins named in `system` (copies: the
    containerd test mounts this directory over /usr/lib/cni)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(BIN / "cnm-cni"), "install", "--bin-dir", str(path)], check=True,
                   capture_output=True)  # fmt: skip
    for name in system:
        shutil.copy2(SYSTEM_PLUGINS / name, path / name)
    return path


@dataclass
class Outcome:
    code: int
    out: dict[str, Any] | None
    stderr: str

    @property
    def error(self) -> dict[str, Any]:
        assert self.code != 0 and self.out is not None, f"expected a CNI error, got {self}"
        return self.out


def exec_plugin(
    binary: Path,
    command: str,
    conf: dict[str, Any] | bytes,
    *,
    host_netns: str,
    container_id: str = "",
    netns: str = "",
    ifname: str = "",
    bin_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Outcome:
    """One plugin execution: env + stdin in, exit code + stdout JSON out."""
    env = {"CNI_COMMAND": command, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if container_id:
        env["CNI_CONTAINERID"] = container_id
    if netns:
        env["CNI_NETNS"] = netns
    if ifname:
        env["CNI_IFNAME"] = ifname
    if bin_dir is not None:
        env["CNI_PATH"] = str(bin_dir)
    env.update(extra_env or {})
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    res = subprocess.run(
        ["nsenter", f"--net=/run/netns/{host_netns}", "--", str(binary)],
        input=data,
        env=env,
        capture_output=True,
        timeout=120,
    )
    text = res.stdout.decode().strip()
    out = json.loads(text) if text else None
    return Outcome(res.returncode, out, res.stderr.decode())


@dataclass
class LibCni:
    conflist: dict[str, Any]
    bin_dir: Path
    host_netns: str
    # (container id, ifname) -> the cached result of the last ADD (libcni caches it too)
    cache: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.conflist["cniVersion"]

    def _request(
        self, plugin: dict[str, Any], prev: dict[str, Any] | None, args: dict[str, Any]
    ) -> dict[str, Any]:
        conf = copy.deepcopy(plugin)
        caps = conf.pop("capabilities", {})
        conf["cniVersion"] = self.version
        conf["name"] = self.conflist["name"]
        runtime = {k: v for k, v in args.items() if caps.get(k)}
        if runtime:
            conf["runtimeConfig"] = runtime
        if prev is not None:
            conf["prevResult"] = prev
        return conf

    def _exec(self, plugin, command, conf, **kw) -> Outcome:
        return exec_plugin(
            self.bin_dir / plugin["type"],
            command,
            conf,
            host_netns=self.host_netns,
            bin_dir=self.bin_dir,
            **kw,
        )

    def add(self, cid: str, netns: str, ifname: str = "eth0", **args: Any) -> Outcome:
        prev = None
        outcome = Outcome(0, None, "")
        for plugin in self.conflist["plugins"]:
            conf = self._request(plugin, prev, args)
            outcome = self._exec(plugin, "ADD", conf, container_id=cid, netns=netns, ifname=ifname)
            if outcome.code != 0:
                return outcome
            prev = outcome.out
        assert prev is not None
        self.cache[(cid, ifname)] = prev
        return outcome

    def delete(self, cid: str, netns: str, ifname: str = "eth0", **args: Any) -> Outcome:
        prev = self.cache.get((cid, ifname))
        outcome = Outcome(0, None, "")
        for plugin in reversed(self.conflist["plugins"]):
            conf = self._request(plugin, prev, args)
            outcome = self._exec(plugin, "DEL", conf, container_id=cid, netns=netns, ifname=ifname)
            if outcome.code != 0:
                return outcome
        self.cache.pop((cid, ifname), None)
        return outcome

    def check(self, cid: str, netns: str, ifname: str = "eth0", **args: Any) -> Outcome:
        prev = self.cache[(cid, ifname)]
        outcome = Outcome(0, None, "")
        for plugin in self.conflist["plugins"]:
            conf = self._request(plugin, prev, args)
            outcome = self._exec(
                plugin, "CHECK", conf, container_id=cid, netns=netns, ifname=ifname
            )
            if outcome.code != 0:
                return outcome
        return outcome

    def gc(self, valid: list[tuple[str, str]]) -> list[Outcome]:
        """GC goes on through every plugin and returns every outcome."""
        attachments = [{"containerID": c, "ifname": i} for c, i in valid]
        outcomes = []
        for plugin in self.conflist["plugins"]:
            conf = self._request(plugin, None, {})
            conf["cni.dev/valid-attachments"] = attachments
            outcomes.append(self._exec(plugin, "GC", conf))
        return outcomes

    def status(self, plugin_type: str = "cnm") -> Outcome:
        plugin = next(p for p in self.conflist["plugins"] if p["type"] == plugin_type)
        return self._exec(plugin, "STATUS", self._request(plugin, None, {}))


# ---------------------------------------------------------------------- result schema


def _is_cidr(text: object) -> bool:
    try:
        ipaddress.ip_interface(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return isinstance(text, str) and "/" in text


def _is_ip(text: object) -> bool:
    try:
        ipaddress.ip_address(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def validate_result(result: dict[str, Any], version: str) -> None:
    """Asserts `result` has the ADD Success structure of SPEC.md section 5."""
    allowed = {"cniVersion", "interfaces", "ips", "routes", "dns"}
    assert set(result) <= allowed, f"unknown result keys {set(result) - allowed}"
    assert result["cniVersion"] == version
    interfaces = result.get("interfaces", [])
    assert isinstance(interfaces, list)
    for iface in interfaces:
        assert isinstance(iface.get("name"), str) and iface["name"], iface
        assert set(iface) <= {"name", "mac", "mtu", "sandbox", "socketPath", "pciID"}, iface
        if "mac" in iface:
            assert len(iface["mac"].split(":")) == 6, iface
        assert isinstance(iface.get("sandbox", ""), str), iface
    old = tuple(int(p) for p in version.split(".")) < (1, 0, 0)
    for ip in result.get("ips", []):
        keys = {"address", "gateway", "interface"} | ({"version"} if old else set())
        assert set(ip) <= keys, ip
        assert _is_cidr(ip["address"]), ip
        if "gateway" in ip:
            assert _is_ip(ip["gateway"]), ip
        if "interface" in ip:
            assert isinstance(ip["interface"], int) and 0 <= ip["interface"] < len(interfaces), ip
        if old:
            assert ip["version"] == str(ipaddress.ip_interface(ip["address"]).version), ip
    for route in result.get("routes", []):
        assert set(route) <= {"dst", "gw", "mtu", "advmss", "priority", "table", "scope"}, route
        assert _is_cidr(route["dst"]), route
        if "gw" in route:
            assert _is_ip(route["gw"]), route
    dns = result.get("dns", {})
    assert set(dns) <= {"nameservers", "domain", "search", "options"}, dns
    for server in dns.get("nameservers", []):
        assert _is_ip(server), dns


def validate_error(error: dict[str, Any], code: int) -> None:
    """Asserts the Error structure of SPEC.md section 5, with this code."""
    assert set(error) <= {"cniVersion", "code", "msg", "details"}, error
    assert isinstance(error["cniVersion"], str)
    assert error["code"] == code, error
    assert isinstance(error["msg"], str) and error["msg"], error
