"""The driver contract: libnetwork's driverapi.Driver, in Python.

A driver turns networks and endpoints into kernel state on this host. The
`Manager` (driver_service/manager.py) owns everything that is common to all
drivers and calls a driver only for its own part:

- records: the manager writes the intent ("creating", "joining", ...) to the
  store before calling `create_network`/`join`/..., and the result after.
  Drivers never write records; what they need to find their kernel objects
  again after a crash must be decided in `plan_network` (pure) and is
  recorded by the manager as `NetworkRecord.data`.
- sandboxes: namespaces, hosts/resolv.conf files, the choice of the
  interface name inside the sandbox (eth0, eth1, ...) and of the endpoint
  that carries the default route are the manager's (libnetwork's sandbox).
- validation: `plan_network` and `plan_endpoint` check every option before
  any step touches the kernel; they raise InvalidArgument naming the option.

Errors are domain errors (services.errors). Every kernel-changing method is
idempotent: repeating it after success, or after a crash half-way, converges
to the same state. Teardown (`delete_network`, `leave`) treats "already gone"
as success and keeps going after a failure, raising all errors at the end.

libnetwork mapping: CreateNetwork → plan_network + create_network;
DeleteNetwork → delete_network; CreateEndpoint → plan_endpoint (nothing is
plumbed: the veth is made at Join, peer born in the sandbox);
EndpointOperInfo → oper_info; Join → join (+ ProgramExternalConnectivity);
Leave → leave (+ RevokeExternalConnectivity); Type/Capabilities → name/scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from driver_service.models import (
    Attachment,
    EndpointRecord,
    EndpointSpec,
    NetworkRecord,
    NetworkSpec,
    SandboxRecord,
)


@runtime_checkable
class Driver(Protocol):
    # The name networks are created with ("bridge", "null", "host", ...).
    name: str
    # "local" (one host) or "global" (every host): GetCapabilities.
    scope: str
    # True when Join puts an interface into the sandbox (and so needs a name).
    makes_interface: bool

    def plan_network(self, spec: NetworkSpec, others: Sequence[NetworkRecord]) -> Mapping[str, str]:
        """Validate `spec` (options included) against this host's other networks.

        Pure apart from read-only kernel queries (e.g. the default MTU). Returns
        the driver data recorded with the network before `create_network` runs:
        everything needed to find or undo its kernel objects later.
        """
        ...

    def create_network(self, net: NetworkRecord) -> None:
        """Build the network's kernel state (bridge, firewall entries). Idempotent.

        On failure, what this call created is removed before the error is raised.
        """
        ...

    def delete_network(self, net: NetworkRecord) -> None:
        """Remove the network's kernel state. Idempotent: already gone is success."""
        ...

    def plan_endpoint(self, net: NetworkRecord, spec: EndpointSpec) -> str:
        """Validate an endpoint against its network; return the MAC to use ("" none)."""
        ...

    def gateways(self, net: NetworkRecord, ep: EndpointRecord) -> tuple[str, str]:
        """(IPv4, IPv6) gateways this endpoint could route through; "" for none.

        Internal networks offer none. The manager gives the default route to
        the first endpoint of a sandbox that offers one.
        """
        ...

    def host_ifname(self, ep: EndpointSpec) -> str:
        """Name of the host-side link Join makes for this endpoint ("" for none)."""
        ...

    def join(
        self, net: NetworkRecord, ep: EndpointRecord, sandbox: SandboxRecord, att: Attachment
    ) -> Attachment:
        """Plumb `ep` into `sandbox` as `att` says (ifname, default_route).

        Returns `att` completed with what the driver did (gateways reported,
        static routes, ports published). On failure nothing of this join is left.
        """
        ...

    def leave(
        self,
        net: NetworkRecord,
        ep: EndpointRecord,
        att: Attachment,
        sandbox: SandboxRecord | None,
    ) -> None:
        """Undo a join (also a half-done one). Idempotent: success when the link,
        the endpoint or the sandbox's namespace is already gone."""
        ...

    def oper_info(self, net: NetworkRecord, ep: EndpointRecord) -> Mapping[str, str]:
        """Driver-specific operational data of an endpoint (EndpointOperInfo.value)."""
        ...

    def restore(self, nets: Sequence[NetworkRecord], eps: Sequence[EndpointRecord]) -> None:
        """Make the kernel match the records after a restart: recreate what is
        missing (a bridge, firewall rules), given every ready network of this
        driver and every endpoint on them."""
        ...


@runtime_checkable
class EndpointHooks(Protocol):
    """Optional, for drivers that keep endpoint state of their own outside
    this process (remote plugins: libnetwork's CreateEndpoint/DeleteEndpoint).
    Built-in drivers plumb nothing before Join and do not implement it."""

    def create_endpoint(self, net: NetworkRecord, ep: EndpointRecord) -> EndpointRecord:
        """Called before the endpoint's record is written; returns the record
        with what the driver filled in (a MAC or an address that was not
        given). On failure nothing of it is left with the driver."""
        ...

    def delete_endpoint(self, network_id: str, endpoint_id: str) -> None:
        """Forget an endpoint. Idempotent; also called for endpoints whose
        record was never written (a crash right after create_endpoint)."""
        ...
