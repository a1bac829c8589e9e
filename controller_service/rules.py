"""The join rules (libnetwork's), as pure checks raising FAILED_PRECONDITION."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from controller_service.models import Endpoint, EndpointState, Network, Sandbox, Scope, State
from services.errors import FailedPrecondition

_JOINED = (EndpointState.JOINING, EndpointState.JOINED, EndpointState.LEAVING)
# An attachment on its way in or out (a request in flight, or one the reconciler settles).
_SETTLING = (
    EndpointState.CREATING,
    EndpointState.JOINING,
    EndpointState.LEAVING,
    EndpointState.DELETING,
)


def check_network_ready(net: Network) -> None:
    if net.state is not State.READY:
        raise FailedPrecondition(
            f"network {net.name!r} is being {'created' if net.state is State.CREATING else 'deleted'}",
            reason="NETWORK_NOT_READY",
        )


def check_sandbox_ready(sb: Sandbox) -> None:
    if sb.state is not State.READY:
        raise FailedPrecondition(
            f"sandbox {sb.name!r} is being {'created' if sb.state is State.CREATING else 'deleted'}",
            reason="SANDBOX_NOT_READY",
        )


def check_same_host(net: Network, sb: Sandbox) -> None:
    """A local-scope network exists on its host only."""
    if net.scope is Scope.LOCAL and net.host and net.host != sb.host:
        raise FailedPrecondition(
            f"network {net.name!r} is local to host {net.host!r} but sandbox {sb.name!r} "
            f"is on host {sb.host!r}",
            reason="HOST_MISMATCH",
        )


def check_not_on_network(
    net: Network,
    sb: Sandbox,
    sandbox_networks: Mapping[str, str],
    ep_id: str = "",
    state_of: Callable[[str], EndpointState | None] | None = None,
) -> None:
    """A sandbox joins a network at most once. `state_of` (an endpoint id's
    state) tells a connection still being made or undone, e.g. by an earlier
    attempt of the same call that failed half-way: that one is worth a retry."""
    other = sandbox_networks.get(net.id)
    if not other or other == ep_id:
        return
    state = state_of(other) if state_of is not None else None
    if state in _SETTLING:
        assert state is not None
        raise FailedPrecondition(
            f"sandbox {sb.name!r} is being connected to or disconnected from network "
            f"{net.name!r} (endpoint {other[:12]} is {state.value}); retry when it settles",
            reason="ENDPOINT_BUSY",
        )
    raise FailedPrecondition(
        f"sandbox {sb.name!r} is already on network {net.name!r} (endpoint {other[:12]})",
        reason="SANDBOX_ALREADY_ON_NETWORK",
    )


def check_join(
    net: Network, ep: Endpoint, sb: Sandbox, sandbox_networks: Mapping[str, str]
) -> None:
    """Whether `ep` may join `sb` now (the idempotent same-pair case is the caller's)."""
    if ep.state in _JOINED and ep.sandbox_id != sb.id:
        raise FailedPrecondition(
            f"endpoint {ep.name!r} is already joined to sandbox {ep.sandbox_id[:12]}",
            reason="ENDPOINT_ALREADY_JOINED",
        )
    if ep.state is not EndpointState.READY:
        raise FailedPrecondition(
            f"endpoint {ep.name!r} is {ep.state.value}; retry when it settles",
            reason="ENDPOINT_BUSY",
        )
    check_network_ready(net)
    check_sandbox_ready(sb)
    check_not_on_network(net, sb, sandbox_networks, ep.id)
    check_same_host(net, sb)
    if ep.host and ep.host != sb.host:
        raise FailedPrecondition(
            f"endpoint {ep.name!r} lives on host {ep.host!r} but sandbox {sb.name!r} "
            f"is on host {sb.host!r}",
            reason="HOST_MISMATCH",
        )
