"""The few /proc/sys switches the firewall depends on.

/proc/sys/net shows the namespace of the thread that opens the file, so each
write happens through `osl.nsenter.run_in_netns` (directly when `netns` is
None: the driver service lives in the host's namespace).
"""

from __future__ import annotations

import logging

from driver_service.osl import validate
from driver_service.osl.nsenter import NetnsRef, run_in_netns

log = logging.getLogger(__name__)

PROC_SYS = "/proc/sys"
IPV4_FORWARD = "net/ipv4/ip_forward"
IPV6_FORWARD = "net/ipv6/conf/all/forwarding"


def _write(key: str, value: str) -> bool:
    """Write one sysctl; False when it does not exist (e.g. the interface is gone)."""
    try:
        with open(f"{PROC_SYS}/{key}", "w") as f:
            f.write(value)
    except FileNotFoundError:
        return False
    return True


def _read(key: str) -> str | None:
    try:
        with open(f"{PROC_SYS}/{key}") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def enable_forwarding(*, ipv4: bool = True, ipv6: bool = True, netns: NetnsRef = None) -> None:
    """Turn on IPv4 and/or IPv6 forwarding in the host namespace. Idempotent.

    Nothing turns it off again: like Docker, cnm cannot know whether someone
    else on the host relies on forwarding. Note that IPv6 forwarding makes the
    kernel ignore router advertisements on interfaces with accept_ra=1.
    """

    def work() -> None:
        if ipv4:
            _write(IPV4_FORWARD, "1")
        if ipv6 and not _write(IPV6_FORWARD, "1"):
            log.info("IPv6 is disabled on this host; IPv6 forwarding left alone")

    run_in_netns(netns, work)


def forwarding_enabled(netns: NetnsRef = None) -> tuple[bool, bool]:
    """(IPv4, IPv6) forwarding as the kernel reports it."""

    def work() -> tuple[bool, bool]:
        return _read(IPV4_FORWARD) == "1", _read(IPV6_FORWARD) == "1"

    return run_in_netns(netns, work)


def set_route_localnet(ifname: str, enabled: bool, netns: NetnsRef = None) -> bool:
    """Allow 127.0.0.0/8 sources/destinations to be routed via `ifname`.

    Needed on a bridge so that the host's own connections to a port published
    on 127.0.0.1 can be DNATed to a sandbox (and then masqueraded). The inet
    table's `guard` chain drops 127/8 destinations arriving from anywhere but
    `lo`, so sandboxes cannot use it to reach the host's loopback services.
    Returns False when the interface does not exist.
    """
    name = validate.ifname(ifname)
    return run_in_netns(
        netns, lambda: _write(f"net/ipv4/conf/{name}/route_localnet", "1" if enabled else "0")
    )
