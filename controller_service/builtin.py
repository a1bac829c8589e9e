"""The built-in networks, as Docker has them: `host` (driver host) and `none`
(driver null), made on first start when `builtin_networks` is on (cnmd turns
it on), never removed; only one network of either driver may exist.

They belong to no host: a sandbox on any host joins them (the driver is told
about the network on that host first, as for global scope). A sandbox on
`host` or `none` is on no other network, as a Docker container in host or
none mode. Pure rules here; networks.py and joins call them.
"""

from __future__ import annotations

from collections.abc import Iterable

from controller_service.models import Network, NetworkSpec, Sandbox, Scope, State
from services.errors import AlreadyExists, FailedPrecondition, InvalidArgument

# name -> driver
BUILTIN_NETWORKS = {"host": "host", "none": "null"}
# Drivers of which only one network may exist (the built-in one).
SINGLETON_DRIVERS = frozenset(BUILTIN_NETWORKS.values())
# Docker's words for a container in host or none mode joining anything else.
_EXCLUSIVE = {
    "host": "sandbox cannot be disconnected from host network or connected to host network",
    "null": "sandbox cannot be connected to multiple networks with one of the networks "
    "in private (none) mode",
}


def is_builtin(net: Network) -> bool:
    return not net.config_only and BUILTIN_NETWORKS.get(net.name) == net.driver


def follows_sandbox(net: Network) -> bool:
    """Plumbed on whichever host the joining sandbox is on (global scope, built-ins)."""
    return net.scope is Scope.GLOBAL or is_builtin(net)


def record(name: str, net_id: str, now: float) -> Network:
    """A built-in network's record, ready at once (host and null create nothing)."""
    return Network(
        id=net_id,
        name=name,
        driver=BUILTIN_NETWORKS[name],
        scope=Scope.LOCAL,
        created=now,
        state=State.READY,
    )


def check_create(spec: NetworkSpec, existing: Iterable[Network]) -> None:
    """One host and one null network; neither takes --internal or addresses."""
    if spec.config_only or spec.driver not in SINGLETON_DRIVERS:
        return
    for net in existing:
        if net.driver == spec.driver and not net.config_only:
            raise AlreadyExists(
                f'only one instance of "{spec.driver}" network is allowed',
                reason="SINGLETON_NETWORK",
                metadata={"network": net.name},
            )
    if spec.internal:
        raise InvalidArgument(
            f"the {spec.driver} driver does not support --internal",
            reason="UNSUPPORTED_BY_DRIVER",
            field="internal",
        )
    if spec.ipam.configs or spec.enable_ipv6:
        raise InvalidArgument(
            f"the {spec.driver} driver takes no subnets (its sandboxes get no address from it)",
            reason="UNSUPPORTED_BY_DRIVER",
            field="ipam.configs" if spec.ipam.configs else "enable_ipv6",
        )


def check_delete(net: Network) -> None:
    if is_builtin(net):
        raise FailedPrecondition(
            f"{net.name} is a pre-defined network and cannot be removed",
            reason="BUILTIN_NETWORK",
        )


def check_host_mode(net: Network, sb: Sandbox) -> None:
    """Only a host-networked sandbox (the host's own namespace) joins the host
    network, and it joins nothing else: Docker decides `--network host` when
    the container is made, never by connecting it."""
    if sb.host_network != (net.driver == "host" and not net.config_only):
        raise FailedPrecondition(_EXCLUSIVE["host"], reason="EXCLUSIVE_NETWORK")


def check_exclusive(net: Network, others: Iterable[Network]) -> None:
    """`net` may join a sandbox already on `others` (its networks) only when
    neither side is a host or null network."""
    others = [o for o in others if o.id != net.id]
    if not others:
        return
    for n in (net, *others):
        if n.driver in _EXCLUSIVE and not n.config_only:
            raise FailedPrecondition(_EXCLUSIVE[n.driver], reason="EXCLUSIVE_NETWORK")
