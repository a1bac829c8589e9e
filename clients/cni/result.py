"""The CNI result of ADD (SPEC.md section 5, "ADD Success"), built from cnm's answer.

Chained after another plugin (e.g. `loopback`), the result is the previous
one with this attachment's interface, addresses and routes appended (address
`interface` indexes point into the combined list) and DNS merged. Results in
spec versions before 1.0.0 carry `version` on each address; newer ones do not.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from clients.cni import errors
from clients.cni.errors import CniError

_LISTS = ("interfaces", "ips", "routes")


def _prev(prev: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of prevResult with its lists checked (6 when it is not a result)."""
    out = copy.deepcopy(prev) if prev else {}
    for key in _LISTS:
        value = out.setdefault(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise CniError(
                errors.DECODE_FAILURE,
                f"cannot decode prevResult.{key}",
                "expected a list of objects",
            )
    dns = out.setdefault("dns", {})
    if not isinstance(dns, dict):
        raise CniError(errors.DECODE_FAILURE, "cannot decode prevResult.dns", "expected an object")
    return out


def add_result(
    cni_version: str,
    prev: dict[str, Any] | None,
    *,
    ifname: str,
    netns: str,
    endpoint: Any,
    dns: dict[str, Any],
) -> dict[str, Any]:
    """`endpoint` is the controller's Endpoint (joined); `dns` what resolv.conf says."""
    out = _prev(prev)
    # The host end first, as the reference plugins list it (no sandbox: on the
    # host); chained plugins such as bandwidth look for it there.
    if endpoint.host_interface_name:
        out["interfaces"].append({"name": endpoint.host_interface_name})
    iface: dict[str, Any] = {"name": ifname, "sandbox": netns}
    if endpoint.mac_address:
        iface["mac"] = endpoint.mac_address
    index = len(out["interfaces"])
    out["interfaces"].append(iface)
    for address, gateway, default in (
        (endpoint.ipv4_address, endpoint.gateway, "0.0.0.0/0"),
        (endpoint.ipv6_address, endpoint.gateway_ipv6, "::/0"),
    ):
        if not address:
            continue
        ip: dict[str, Any] = {"address": address, "interface": index}
        if gateway:
            ip["gateway"] = gateway
            out["routes"].append({"dst": default, "gw": gateway})
        out["ips"].append(ip)
    out["dns"] = merge_dns(out["dns"], dns)
    out["cniVersion"] = cni_version
    return for_version(out, cni_version)


def for_version(result: dict[str, Any], cni_version: str) -> dict[str, Any]:
    """Address entries as the version wants them (`version` before 1.0.0 only)."""
    old = tuple(int(p) for p in cni_version.split(".")) < (1, 0, 0)
    for ip in result.get("ips", []):
        if old:
            ip.setdefault("version", str(ipaddress.ip_interface(ip["address"]).version))
        else:
            ip.pop("version", None)
    if not result.get("dns"):
        result.pop("dns", None)
    return result


def merge_dns(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("nameservers", "search", "options"):
        merged = list(dict.fromkeys([*(first.get(key) or []), *(second.get(key) or [])]))
        if merged:
            out[key] = merged
    domain = first.get("domain") or second.get("domain")
    if domain:
        out["domain"] = domain
    return out


def resolv_conf_dns(text: str) -> dict[str, Any]:
    """The DNS part of a result from the resolv.conf cnm wrote for the sandbox."""
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    domain = ""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver":
            servers.append(words[1])
        elif words[0] == "search":
            search = words[1:]
        elif words[0] == "domain":
            domain = words[1]
        elif words[0] == "options":
            options.extend(words[1:])
    return merge_dns(
        {"nameservers": servers, "search": search, "options": options, "domain": domain}, {}
    )


def find_interface(result: dict[str, Any], ifname: str, netns: str) -> int:
    """Index of the attachment's interface in a result, -1 when absent."""
    for i, iface in enumerate(result.get("interfaces", [])):
        if iface.get("name") == ifname and iface.get("sandbox") == netns:
            return i
    return -1
