"""NetworkDriver.*: Docker's network driver calls served by the cnm controller.

Docker's model: dockerd makes the container's namespace itself and moves the
interface Join names (InterfaceName.SrcName) into it, then addresses it with
the endpoint's addresses and routes it through Join's Gateway. So every Docker
sandbox is a cnm sandbox with `runtime_moves_interfaces`: cnm makes the veth in
the host namespace (host end on the network) and hands the other end back.

Published ports arrive with CreateEndpoint (`com.docker.network.portmap`, on
the endpoint of the container's first network, as dockerd sends them) and cnm's
port mapper programs them when the endpoint joins; ProgramExternalConnectivity
checks that they are in force, RevokeExternalConnectivity has nothing left to
do (Leave releases them).

Every method is idempotent, as Docker retries after a plugin restart.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import Any

from clients.client import Client, IpamConfig
from clients.docker_plugin import protocol as p
from clients.docker_plugin.objects import (
    LABEL_NETWORK_ID,
    RESERVATION_PREFIX,
    Objects,
    endpoint_name,
    network_name,
    sandbox_name,
)
from clients.errors import AlreadyExistsError, NotFoundError
from cnm.controller.v1 import controller_pb2 as pb

log = logging.getLogger(__name__)

# cnm driver -> (Docker's data scope, connectivity scope). Docker 20.10 refuses
# networks of a remote driver whose data scope is "global" unless the daemon is
# a swarm manager ("This node is not a swarm manager"), so the overlay answers
# "local" for the data (each dockerd keeps its own network object) and
# "global" for connectivity (the cnm overlay spans every host).
SCOPES = {"bridge": ("local", "local"), "overlay": ("local", "global")}


def _ipam_configs(req: dict[str, Any], key: str, sub_pools: dict[str, str]) -> list[IpamConfig]:
    raw = req.get(key) or []
    if not isinstance(raw, list) or len(raw) > 64:
        raise p.PluginError(f"{key}: expected a list")
    out = []
    for d in raw:
        if not isinstance(d, dict):
            raise p.PluginError(f"{key}: expected objects")
        pool = p.field(d, "Pool")
        aux = p.string_map(d.get("AuxAddresses"), "AuxAddresses")
        out.append(
            IpamConfig(
                subnet=pool,
                ip_range=sub_pools.get(pool, ""),
                gateway=p.bare(p.field(d, "Gateway", required=False)),
                aux_addresses={k: p.bare(v) for k, v in aux.items()},
            )
        )
    return out


class NetworkDriver:
    def __init__(
        self, cnm: Client, objects: Objects, *, driver: str, host: str, sub_pools: dict[str, str]
    ) -> None:
        if driver not in SCOPES:
            raise ValueError(f"cnm driver {driver!r}: expected one of {sorted(SCOPES)}")
        self.cnm = cnm
        self.objects = objects
        self.driver = driver
        self.scope, self.connectivity = SCOPES[driver]
        self.host = host
        # Pool -> ip range (--ip-range) from cnm's own IpamDriver.RequestPool.
        self.sub_pools = sub_pools

    def routes(self) -> dict[str, Any]:
        n = "NetworkDriver."
        return {
            n + "GetCapabilities": self.get_capabilities,
            n + "CreateNetwork": self.create_network,
            n + "DeleteNetwork": self.delete_network,
            n + "CreateEndpoint": self.create_endpoint,
            n + "DeleteEndpoint": self.delete_endpoint,
            n + "EndpointOperInfo": self.endpoint_oper_info,
            n + "Join": self.join,
            n + "Leave": self.leave,
            n + "ProgramExternalConnectivity": self.program_external_connectivity,
            n + "RevokeExternalConnectivity": self.revoke_external_connectivity,
            n + "DiscoverNew": self.nothing,
            n + "DiscoverDelete": self.nothing,
        }

    def get_capabilities(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"Scope": self.scope, "ConnectivityScope": self.connectivity}

    def nothing(self, req: dict[str, Any]) -> dict[str, Any]:
        return {}

    # --- networks ---------------------------------------------------------------------------

    def create_network(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = p.docker_id(req, "NetworkID")
        opts = p.options(req)
        configs = _ipam_configs(req, "IPv4Data", self.sub_pools)
        configs += _ipam_configs(req, "IPv6Data", self.sub_pools)
        name = network_name(nid)
        if self.connectivity == "global":
            # The same overlay made by another dockerd: shared, not made twice.
            wanted = {ipaddress.ip_network(c.subnet, strict=False) for c in configs}
            shared = self.objects.shared(self.driver, wanted) if wanted else None
            if shared is not None and shared.labels.get(LABEL_NETWORK_ID) != nid:
                self.objects.aliases.set(nid, shared.name)
                log.info("network %s shares cnm network %s", nid[:12], shared.name)
                return {}
        try:
            self.cnm.create_network(
                name,
                driver=self.driver,
                subnets=configs,
                internal=p.flag(opts.get(p.INTERNAL)),
                enable_ipv6=p.flag(opts.get(p.ENABLE_IPV6)),
                options=p.string_map(opts.get(p.GENERIC), p.GENERIC),
                labels={LABEL_NETWORK_ID: nid},
                host=self.host if self.connectivity == "local" else "",
            )
        except AlreadyExistsError as exists:
            # A retry (the first answer was lost) is fine if it made this very
            # network; anything else (an overlapping subnet) is the user's error.
            try:
                self.objects.network(nid)
            except p.PluginError:
                raise exists from None
        return {}

    def delete_network(self, req: dict[str, Any]) -> dict[str, Any]:
        """Deletes the cnm network, unless it is an overlay that other dockerds'
        containers still use (it goes with the last one's DeleteNetwork)."""
        nid = p.docker_id(req, "NetworkID")
        self.objects.drop_network(nid)
        try:
            net = self.objects.network(nid)
        except p.PluginError:
            self.objects.aliases.set(nid, None)
            return {}
        endpoints = self.cnm.list_endpoints(network=net.id)
        in_use = [ep for ep in endpoints if not ep.name.startswith(RESERVATION_PREFIX)]
        if in_use and self.connectivity == "global":
            self.objects.aliases.set(nid, None)
            self.objects.drop_network(nid)
            return {}
        # Address reservations Docker never turned into endpoints (it releases them
        # before DeleteNetwork; a crash in between could leave some).
        for ep in endpoints:
            if ep.name.startswith(RESERVATION_PREFIX):
                self._delete_endpoint(ep.id)
        with contextlib.suppress(NotFoundError):
            self.cnm.delete_network(net.id)
        self.objects.aliases.set(nid, None)
        self.objects.drop_network(nid)
        return {}

    # --- endpoints --------------------------------------------------------------------------

    def create_endpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = p.docker_id(req, "NetworkID")
        eid = p.docker_id(req, "EndpointID")
        iface = req.get("Interface") or {}
        if not isinstance(iface, dict):
            raise p.PluginError("Interface: expected an object")
        address = p.field(iface, "Address", required=False)
        address6 = p.field(iface, "AddressIPv6", required=False)
        mac = p.field(iface, "MacAddress", required=False)
        opts = p.options(req)
        net = self.objects.network(nid)
        wanted = [p.bare(a) for a in (address, address6) if a]

        def create() -> pb.Endpoint:
            # One request id per Docker endpoint: a retry (Docker lost the answer)
            # gets the endpoint the first call made.
            return self.cnm.create_endpoint(
                net.id,
                name=endpoint_name(eid),
                ipv4_address=p.bare(address),
                ipv6_address=p.bare(address6),
                mac_address=mac,
                port_bindings=p.port_bindings(opts),
                exposed_ports=p.exposed_ports(opts),
                request_id=f"docker-ep-{eid}",
            )

        # The addresses cnm's IPAM driver reserved for this endpoint are given up
        # for the endpoint itself (the same addresses, asked for statically).
        for bare in wanted:
            held = self.objects.take_reservation(net.id, bare)
            if held:
                self._delete_endpoint(held)
        try:
            existing = create()
        except NotFoundError:
            self.objects.drop_network(nid)
            raise p.PluginError(f"network {nid[:12]} not found in cnm") from None
        except AlreadyExistsError as e:
            if e.reason != "ADDRESS_IN_USE":
                raise
            # Reserved by an earlier plugin process: found in the controller.
            found = [r for a in wanted if (r := self.objects.reservation(net.id, a)) is not None]
            if not found:
                raise
            for held_ep in found:
                self._delete_endpoint(held_ep.id)
            existing = create()
        self.objects.remember(eid, existing.id)
        out: dict[str, str] = {}
        if not mac and existing.mac_address:
            out["MacAddress"] = existing.mac_address
        if not address and existing.ipv4_address:
            out["Address"] = existing.ipv4_address
        if not address6 and existing.ipv6_address:
            out["AddressIPv6"] = existing.ipv6_address
        return {"Interface": out} if out else {}

    def _delete_endpoint(self, cnm_id: str) -> None:
        with contextlib.suppress(NotFoundError):
            self.cnm.delete_endpoint(cnm_id)

    def delete_endpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = p.docker_id(req, "NetworkID")
        eid = p.docker_id(req, "EndpointID")
        ep = self.objects.endpoint(nid, eid)
        if ep is not None:
            sandbox = ep.sandbox_id
            self._delete_endpoint(ep.id)
            self._drop_sandbox_if_empty(sandbox)
        self.objects.forget(eid)
        return {}

    def _endpoint(self, req: dict[str, Any]) -> pb.Endpoint:
        nid = p.docker_id(req, "NetworkID")
        eid = p.docker_id(req, "EndpointID")
        ep = self.objects.endpoint(nid, eid)
        if ep is None:
            self.objects.network(nid)  # the network, when that is what is missing
            raise p.PluginError(f"endpoint {eid[:12]} not found in cnm")
        return ep

    def endpoint_oper_info(self, req: dict[str, Any]) -> dict[str, Any]:
        ep = self._endpoint(req)
        value: dict[str, Any] = {p.MAC_ADDRESS: ep.mac_address}
        if ep.published_ports:
            value[p.PORT_MAP] = p.port_map_json(ep.published_ports)
        if ep.exposed_ports:
            value[p.EXPOSED_PORTS] = p.exposed_json(ep.exposed_ports)
        return {"Value": value}

    # --- join / leave -----------------------------------------------------------------------

    def _sandbox(self, key: str) -> str:
        """The id of the cnm sandbox of a Docker sandbox, made at its first Join."""
        cached = self.objects.sandboxes.get(key)
        if cached:
            return cached
        name = sandbox_name(key)
        try:
            sb = self.cnm.get_sandbox(name)
        except NotFoundError:
            try:
                sb = self.cnm.create_sandbox(
                    name, host=self.host, external_key=key, runtime_moves_interfaces=True
                )
            except AlreadyExistsError:
                sb = self.cnm.get_sandbox(name)
        self.objects.sandboxes[key] = sb.id
        return sb.id

    def _drop_sandbox_if_empty(self, sandbox_id: str) -> None:
        if not sandbox_id:
            return
        for key, cached in list(self.objects.sandboxes.items()):
            if cached == sandbox_id:
                self.objects.sandboxes.pop(key, None)
        with contextlib.suppress(NotFoundError):
            sb = self.cnm.get_sandbox(sandbox_id)
            if not sb.endpoints and sb.name.startswith("docker-"):
                self.cnm.delete_sandbox(sb.id)

    def join(self, req: dict[str, Any]) -> dict[str, Any]:
        ep = self._endpoint(req)
        key = p.field(req, "SandboxKey")
        sandbox_id = self._sandbox(key)
        try:
            try:
                joined = self.cnm.join(ep.id, sandbox_id)
            except NotFoundError:
                # The cached sandbox is gone (deleted behind this process): anew.
                self.objects.sandboxes.pop(key, None)
                sandbox_id = self._sandbox(key)
                joined = self.cnm.join(ep.id, sandbox_id)
        except Exception:
            self._drop_sandbox_if_empty(sandbox_id)
            raise
        return {
            "InterfaceName": {"SrcName": joined.interface_name, "DstPrefix": "eth"},
            "Gateway": joined.gateway,
            "GatewayIPv6": joined.gateway_ipv6,
            "StaticRoutes": [],
            "DisableGatewayService": False,
        }

    def leave(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = p.docker_id(req, "NetworkID")
        eid = p.docker_id(req, "EndpointID")
        ep = self.objects.endpoint(nid, eid)
        if ep is None or not ep.sandbox_id:
            return {}
        self.cnm.leave(ep.id)
        self._drop_sandbox_if_empty(ep.sandbox_id)
        return {}

    def program_external_connectivity(self, req: dict[str, Any]) -> dict[str, Any]:
        ep = self._endpoint(req)
        wanted = p.port_bindings(p.options(req))
        have = {(b.protocol, b.container_port) for b in ep.port_bindings}
        missing = [b for b in wanted if (b.protocol, b.container_port) not in have]
        if missing:
            raise p.PluginError(
                "cnm publishes ports with the container's first network only; "
                f"{len(missing)} binding(s) arrived later"
            )
        return {}

    def revoke_external_connectivity(self, req: dict[str, Any]) -> dict[str, Any]:
        return {}
