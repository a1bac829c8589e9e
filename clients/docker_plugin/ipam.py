"""IpamDriver.*: Docker's IPAM calls answered from cnm's IPAM, through the controller.

cnm's IPAM hands out addresses per cnm network, and Docker asks for a pool
and a gateway before it creates the network. So:

- RequestPool needs a subnet (`--subnet`): the pool id is "cnm:<subnet>", and
  the subnet with its --ip-range is kept for the network driver's
  CreateNetwork, which makes the cnm network (its gateway reserved there).
- RequestAddress for the gateway (or an --aux-address, which also comes before
  the network exists) answers the requested address, or the subnet's first
  host for the gateway; cnm reserves both when the network is made.
- RequestAddress for an endpoint reserves the next free address of the cnm
  network (an endpoint "docker-ip-..." holds it) until NetworkDriver
  CreateEndpoint turns it into the real endpoint; ReleaseAddress drops a
  reservation that is still there (one made by an earlier plugin process
  goes at the latest with the network's DeleteNetwork).

So the cnm IPAM driver serves networks of the cnm network driver only
(`-d cnm --ipam-driver cnm`); with Docker's default IPAM (no --ipam-driver),
Docker picks the subnet and cnm takes it as given.
"""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from typing import Any

from clients.client import Client
from clients.docker_plugin import protocol as p
from clients.docker_plugin.objects import RESERVATION_PREFIX, Objects
from clients.errors import NotFoundError
from cnm.controller.v1 import controller_pb2 as pb

POOL_PREFIX = "cnm:"
LOCAL_SPACE = "CnmLocal"
GLOBAL_SPACE = "CnmGlobal"


def _pool_of(req: dict[str, Any]) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    pool_id = p.field(req, "PoolID")
    if not pool_id.startswith(POOL_PREFIX):
        raise p.PluginError(f"pool {pool_id[:80]!r} is not a cnm pool")
    try:
        return ipaddress.ip_network(pool_id[len(POOL_PREFIX) :])
    except ValueError:
        raise p.PluginError(f"pool {pool_id[:80]!r} is not a cnm pool") from None


def _cidr(address: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return f"{address}/{net.prefixlen}"


class IpamDriver:
    def __init__(self, cnm: Client, objects: Objects, sub_pools: dict[str, str]) -> None:
        self.cnm = cnm
        self.objects = objects
        # Pool -> --ip-range, read by NetworkDriver.CreateNetwork.
        self.sub_pools = sub_pools

    def routes(self) -> dict[str, Any]:
        n = "IpamDriver."
        return {
            n + "GetCapabilities": self.get_capabilities,
            n + "GetDefaultAddressSpaces": self.get_default_address_spaces,
            n + "RequestPool": self.request_pool,
            n + "ReleasePool": self.release_pool,
            n + "RequestAddress": self.request_address,
            n + "ReleaseAddress": self.release_address,
        }

    def get_capabilities(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"RequiresMACAddress": False, "RequiresRequestReplay": False}

    def get_default_address_spaces(self, req: dict[str, Any]) -> dict[str, Any]:
        return {
            "LocalDefaultAddressSpace": LOCAL_SPACE,
            "GlobalDefaultAddressSpace": GLOBAL_SPACE,
        }

    def request_pool(self, req: dict[str, Any]) -> dict[str, Any]:
        pool = p.field(req, "Pool", required=False)
        if not pool:
            raise p.PluginError(
                "the cnm IPAM driver needs a subnet (--subnet); without --ipam-driver "
                "Docker picks one and cnm uses it"
            )
        try:
            net = ipaddress.ip_network(pool)
        except ValueError as e:
            raise p.PluginError(f"invalid subnet {pool[:80]!r}: {e}") from None
        if bool(req.get("V6")) != (net.version == 6):
            raise p.PluginError(f"subnet {pool} is not an IPv{6 if req.get('V6') else 4} subnet")
        sub = p.field(req, "SubPool", required=False)
        if sub:
            try:
                sub_net = ipaddress.ip_network(sub)
            except ValueError as e:
                raise p.PluginError(f"invalid ip range {sub[:80]!r}: {e}") from None
            if sub_net.version != net.version or not sub_net.subnet_of(net):  # type: ignore[arg-type]
                raise p.PluginError(f"ip range {sub} is not inside subnet {pool}")
            self.sub_pools[str(net)] = str(sub_net)
        return {"PoolID": f"{POOL_PREFIX}{net}", "Pool": str(net), "Data": {}}

    def release_pool(self, req: dict[str, Any]) -> dict[str, Any]:
        net = _pool_of(req)
        self.sub_pools.pop(str(net), None)
        return {}

    def request_address(self, req: dict[str, Any]) -> dict[str, Any]:
        pool = _pool_of(req)
        address = p.field(req, "Address", required=False)
        if address:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                raise p.PluginError(f"invalid address {address[:80]!r}") from None
            if ip not in pool:
                raise p.PluginError(f"address {address} is not in subnet {pool}")
        opts = p.string_map(p.options(req), "Options")
        if opts.get(p.REQUEST_ADDRESS_TYPE) == p.GATEWAY_TYPE:
            return {"Address": _cidr(address or str(next(pool.hosts())), pool), "Data": {}}
        net = self.objects.network_of_pool(str(pool))
        if net is not None:
            try:
                return self._reserve(net, pool, address)
            except NotFoundError:
                net = self.objects.network_of_pool(str(pool), fresh=True)
        if net is None:
            if address:
                # An --aux-address, asked for before the network exists: cnm
                # reserves it when the network is made.
                return {"Address": _cidr(address, pool), "Data": {}}
            raise p.PluginError(
                f"no cnm network has subnet {pool}: the cnm IPAM driver serves "
                "networks of the cnm network driver (-d cnm) only"
            )
        return self._reserve(net, pool, address)

    def _reserve(
        self, net: pb.Network, pool: ipaddress.IPv4Network | ipaddress.IPv6Network, address: str
    ) -> dict[str, Any]:
        """An endpoint of the cnm network holding the next free (or the given) address."""
        v6 = pool.version == 6
        ep = self.cnm.create_endpoint(
            net.id,
            name=f"{RESERVATION_PREFIX}{uuid.uuid4().hex[:16]}",
            ipv4_address="" if v6 else address,
            ipv6_address=address if v6 else "",
        )
        got = ep.ipv6_address if v6 else ep.ipv4_address
        if not got:
            self.cnm.delete_endpoint(ep.id)
            raise p.PluginError(f"cnm gave no IPv{pool.version} address in subnet {pool}")
        self.objects.reserved(net.id, p.bare(got), ep.id)
        return {"Address": got, "Data": {}}

    def release_address(self, req: dict[str, Any]) -> dict[str, Any]:
        pool = _pool_of(req)
        address = p.field(req, "Address", required=False)
        if not address:
            return {}
        net = self.objects.network_of_pool(str(pool))
        if net is None:
            return {}
        # Usually the reservation became the endpoint (and DeleteEndpoint freed the
        # address); one an earlier plugin process made goes with the network.
        held = self.objects.take_reservation(net.id, address)
        if held:
            with contextlib.suppress(NotFoundError):
                self.cnm.delete_endpoint(held)
        return {}
