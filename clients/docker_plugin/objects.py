"""How Docker's objects map onto cnm's, and finding them again.

Found from names and labels in the controller, so a restarted plugin serves
the objects an earlier one made; the one fact kept in a file of the plugin's
(`--state-dir`) is which shared overlay a Docker network of this daemon
stands for (an alias), as no name of it reaches the plugin.

- Docker network <NetworkID>   -> cnm network "docker-<NetworkID[:12]>",
                                  label com.docker.network.id=<NetworkID>;
                                  an overlay that another dockerd made with the
                                  same subnets is shared instead (an alias)
- Docker endpoint <EndpointID> -> cnm endpoint "docker-<EndpointID[:12]>" on it
- Docker sandbox <SandboxKey>  -> cnm sandbox "docker-<basename(key)[:12]>", made
                                  at the first Join into it with the key as
                                  external key and runtime_moves_interfaces,
                                  deleted when its last endpoint leaves
- cnm IPAM address reservation -> cnm endpoint "docker-ip-<random>", made by
                                  RequestAddress, replaced by the real endpoint
                                  (same address) at CreateEndpoint
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
from pathlib import Path

from clients.client import Client
from clients.docker_plugin.protocol import PluginError
from clients.errors import NotFoundError
from cnm.controller.v1 import controller_pb2 as pb

log = logging.getLogger(__name__)

PREFIX = "docker-"
RESERVATION_PREFIX = "docker-ip-"
LABEL_NETWORK_ID = "com.docker.network.id"


def network_name(network_id: str) -> str:
    return f"{PREFIX}{network_id[:12]}"


def endpoint_name(endpoint_id: str) -> str:
    return f"{PREFIX}{endpoint_id[:12]}"


def sandbox_name(sandbox_key: str) -> str:
    base = "".join(c for c in os.path.basename(sandbox_key) if c.isalnum() or c in "_-")
    if not base:
        raise PluginError(f"SandboxKey {sandbox_key[:200]!r}: expected a namespace path")
    return f"{PREFIX}{base[:12]}"


def subnets(net: pb.Network) -> set:
    return {ipaddress.ip_network(c.subnet, strict=False) for c in net.ipam.configs if c.subnet}


class Aliases:
    """Docker NetworkID -> name of the shared cnm network it stands for, in a
    JSON file rewritten atomically (write + rename) on every change."""

    def __init__(self, state_dir: str) -> None:
        self.path = Path(state_dir) / "aliases.json"
        self._lock = threading.Lock()
        try:
            self._map: dict[str, str] = json.loads(self.path.read_text())
        except FileNotFoundError:
            self._map = {}

    def get(self, network_id: str) -> str:
        with self._lock:
            return self._map.get(network_id, "")

    def set(self, network_id: str, name: str | None) -> None:
        with self._lock:
            if name is None:
                if self._map.pop(network_id, None) is None:
                    return
            else:
                self._map[network_id] = name
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._map, sort_keys=True))
            os.replace(tmp, self.path)


class Objects:
    """Lookups of cnm objects by their Docker names, with small caches of what
    this process made or found (the controller stays the truth: a stale entry
    shows as NOT_FOUND, and callers look again)."""

    def __init__(self, cnm: Client, aliases: Aliases) -> None:
        self.cnm = cnm
        self.aliases = aliases
        self._lock = threading.Lock()
        # Docker EndpointID -> cnm endpoint id.
        self._endpoints: dict[str, str] = {}
        # Docker NetworkID -> cnm network; subnet -> cnm network.
        self._networks: dict[str, pb.Network] = {}
        self._pools: dict[str, pb.Network] = {}
        # (cnm network id, bare address) -> reservation endpoint id (IpamDriver's).
        self._reservations: dict[tuple[str, str], str] = {}
        # Docker SandboxKey -> cnm sandbox id.
        self.sandboxes: dict[str, str] = {}

    def network_name(self, network_id: str) -> str:
        """The cnm network a Docker network stands for (its own, or a shared one)."""
        return self.aliases.get(network_id) or network_name(network_id)

    def network(self, network_id: str) -> pb.Network:
        with self._lock:
            cached = self._networks.get(network_id)
        if cached is not None:
            return cached
        net = self._lookup_network(network_id)
        with self._lock:
            self._networks[network_id] = net
        return net

    def drop_network(self, network_id: str) -> None:
        """Forget what is cached of a network (deleted, or found stale)."""
        with self._lock:
            net = self._networks.pop(network_id, None)
            if net is not None:
                self._pools = {k: v for k, v in self._pools.items() if v.id != net.id}
                self._reservations = {k: v for k, v in self._reservations.items() if k[0] != net.id}

    def _lookup_network(self, network_id: str) -> pb.Network:
        alias = self.aliases.get(network_id)
        try:
            net = self.cnm.get_network(alias or network_name(network_id))
        except NotFoundError:
            raise PluginError(f"network {network_id[:12]} not found in cnm") from None
        if not alias and net.labels.get(LABEL_NETWORK_ID) != network_id:
            raise PluginError(f"network {network_id[:12]} not found in cnm")
        return net

    def remember(self, endpoint_id: str, cnm_id: str) -> None:
        with self._lock:
            self._endpoints[endpoint_id] = cnm_id

    def forget(self, endpoint_id: str) -> None:
        with self._lock:
            self._endpoints.pop(endpoint_id, None)

    def endpoint(self, network_id: str, endpoint_id: str) -> pb.Endpoint | None:
        """The cnm endpoint of a Docker endpoint, None when there is none."""
        with self._lock:
            cached = self._endpoints.get(endpoint_id)
        if cached:
            try:
                return self.cnm.get_endpoint(cached)
            except NotFoundError:
                self.forget(endpoint_id)
        try:
            eps = self.cnm.list_endpoints(network=self.network_name(network_id))
        except NotFoundError:
            return None
        name = endpoint_name(endpoint_id)
        for ep in eps:
            if ep.name == name:
                self.remember(endpoint_id, ep.id)
                return ep
        return None

    def network_of_pool(self, pool: str, *, fresh: bool = False) -> pb.Network | None:
        """The Docker-made cnm network with this subnet, if any (`fresh`: not from
        the cache)."""
        with self._lock:
            cached = None if fresh else self._pools.get(pool)
        if cached is not None:
            return cached
        want = ipaddress.ip_network(pool, strict=False)
        for net in self.cnm.list_networks(labels=[LABEL_NETWORK_ID]):
            if want in subnets(net):
                with self._lock:
                    self._pools[pool] = net
                return net
        return None

    def shared(self, driver: str, wanted: set) -> pb.Network | None:
        """A Docker-made cnm network of `driver` with exactly these subnets."""
        for net in self.cnm.list_networks(labels=[LABEL_NETWORK_ID], drivers=[driver]):
            if subnets(net) == wanted:
                return net
        return None

    def reserved(self, network_id: str, address: str, endpoint_id: str) -> None:
        with self._lock:
            self._reservations[(network_id, address)] = endpoint_id

    def take_reservation(self, network_id: str, address: str) -> str:
        """The reservation this process made for `address` (bare), forgotten; ""."""
        with self._lock:
            return self._reservations.pop((network_id, address), "")

    def reservation(self, network: str, address: str) -> pb.Endpoint | None:
        """The address reservation endpoint holding `address` (bare) on a network,
        looked up in the controller (one made by an earlier plugin process)."""
        for ep in self.cnm.list_endpoints(network=network):
            if not ep.name.startswith(RESERVATION_PREFIX):
                continue
            for cidr in (ep.ipv4_address, ep.ipv6_address):
                if cidr and str(ipaddress.ip_interface(cidr).ip) == address:
                    return ep
        return None
