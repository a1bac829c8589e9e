"""The `null` driver: a sandbox with loopback only (`docker run --network none`).

Networks and endpoints are bookkeeping only; Join puts nothing into the
sandbox, whose namespace already has `lo` up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from driver_service.constants import DRIVER_NULL
from driver_service.models import (
    SCOPE_LOCAL,
    Attachment,
    EndpointRecord,
    EndpointSpec,
    NetworkRecord,
    NetworkSpec,
    SandboxRecord,
)
from services.errors import InvalidArgument


class NoInterfaceDriver:
    """Shared by `null` and `host`: nothing is created in any namespace."""

    name = ""
    scope = SCOPE_LOCAL
    makes_interface = False

    def plan_network(self, spec: NetworkSpec, others: Sequence[NetworkRecord]) -> Mapping[str, str]:
        if spec.options:
            raise InvalidArgument(
                f"driver {self.name!r} takes no options (got {', '.join(sorted(spec.options))})"
            )
        return {}

    def create_network(self, net: NetworkRecord) -> None:
        return None

    def delete_network(self, net: NetworkRecord) -> None:
        return None

    def plan_endpoint(self, net: NetworkRecord, spec: EndpointSpec) -> str:
        return ""

    def gateways(self, net: NetworkRecord, ep: EndpointRecord) -> tuple[str, str]:
        return ("", "")

    def host_ifname(self, ep: EndpointSpec) -> str:
        return ""

    def join(
        self, net: NetworkRecord, ep: EndpointRecord, sandbox: SandboxRecord, att: Attachment
    ) -> Attachment:
        return att

    def leave(
        self,
        net: NetworkRecord,
        ep: EndpointRecord,
        att: Attachment,
        sandbox: SandboxRecord | None,
    ) -> None:
        return None

    def oper_info(self, net: NetworkRecord, ep: EndpointRecord) -> Mapping[str, str]:
        return {}

    def restore(self, nets: Sequence[NetworkRecord], eps: Sequence[EndpointRecord]) -> None:
        return None


class NullDriver(NoInterfaceDriver):
    name = DRIVER_NULL
