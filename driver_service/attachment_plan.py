"""What a Join will make, decided before anything is recorded or plumbed:
the interface name inside the sandbox (eth0, eth1, ... or the endpoint's
`ifname` option), which endpoint of a sandbox carries the default route, and
the address clash check of a new endpoint, and host-network mode (only
a host-networked sandbox joins `host`). Reads the driver's state only."""

from __future__ import annotations

from driver_service.constants import (
    CONTAINER_IFACE_PREFIX,
    DRIVER_HOST,
    ENDPOINT_DEFAULT_ROUTE_OPTION,
    ENDPOINT_IFNAME_OPTION,
    HANDOFF_VETH_PREFIX,
    SANDBOX_IFNAME_PREFIX,
)
from driver_service.drivers.base import Driver
from driver_service.models import (
    JOINING,
    Attachment,
    EndpointRecord,
    EndpointSpec,
    NetworkRecord,
    SandboxRecord,
)
from driver_service.state import State
from services.errors import AlreadyExists, FailedPrecondition


def plan(
    state: State, driver: Driver, net: NetworkRecord, ep: EndpointRecord, sb: SandboxRecord
) -> Attachment:
    others = [e for e in state.endpoints_in_sandbox(sb.id) if e.id != ep.id]
    atts = [e.attachment for e in others if e.attachment is not None]
    ifname = ""
    handoff = sb.spec.runtime_moves_interfaces
    if driver.makes_interface and handoff:
        ifname = f"{HANDOFF_VETH_PREFIX}{ep.id[:11]}"
    elif driver.makes_interface:
        used = {a.ifname for a in atts}
        ifname = ep.spec.options.get(ENDPOINT_IFNAME_OPTION, "")
        if ifname and ifname in used:
            raise AlreadyExists(
                f"sandbox {sb.id[:12]} already has an interface named {ifname!r}",
                reason="INTERFACE_NAME_TAKEN",
                metadata={"sandbox_id": sb.id, "interface": ifname},
            )
        prefix = net.spec.options.get(CONTAINER_IFACE_PREFIX) or SANDBOX_IFNAME_PREFIX
        n = 0
        while not ifname:
            if f"{prefix}{n}" not in used:
                ifname = f"{prefix}{n}"
            n += 1
    gw4, gw6 = driver.gateways(net, ep)
    has_default = any(a.default_route for a in atts)
    wants_default = ep.spec.options.get(ENDPOINT_DEFAULT_ROUTE_OPTION, "true") == "true"
    return Attachment(
        sandbox_id=sb.id,
        state=JOINING,
        ifname=ifname,
        host_ifname=driver.host_ifname(ep.spec),
        gateway=gw4,
        gateway_ipv6=gw6,
        # The runtime that moves interfaces picks the default route itself.
        default_route=bool(gw4 or gw6) and wants_default and (handoff or not has_default),
        seq=max((a.seq for a in atts), default=0) + 1,
    )


def check_addresses_free(state: State, spec: EndpointSpec) -> None:
    # Specs hold addresses in canonical CIDR text (specs.endpoint_spec), so the
    # text before "/" is the canonical address: compared as text, without
    # parsing every endpoint of the network on each create.
    mine = {a.partition("/")[0] for a in (spec.address, spec.address_ipv6) if a}
    if not mine:
        return
    for other in state.endpoints_of_network(spec.network_id):
        for theirs in (other.spec.address, other.spec.address_ipv6):
            ip = theirs.partition("/")[0]
            if ip and ip in mine:
                raise AlreadyExists(
                    f"address {ip} is already used by endpoint "
                    f"{other.id[:12]} on network {spec.network_id[:12]}",
                    reason="ADDRESS_IN_USE",
                )


def check_host_mode(net: NetworkRecord, sb: SandboxRecord) -> None:
    """A host-networked sandbox (the host's own namespace) joins `host`
    networks only, and only it does: nothing is ever plumbed into the host's
    namespace, and a sandbox with a namespace of its own gets nothing from
    `host` (Docker refuses both)."""
    if sb.spec.host_network != (net.spec.driver == DRIVER_HOST):
        raise FailedPrecondition(
            "sandbox cannot be disconnected from host network or connected to host network"
            + (" (it uses the host's network namespace)" if sb.spec.host_network else ""),
            reason="HOST_NETWORK_MODE",
            metadata={"sandbox_id": sb.id, "network_id": net.id},
        )
