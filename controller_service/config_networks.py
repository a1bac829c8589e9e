"""Configuration networks: Docker's `network create --config-only` / `--config-from`.

A config-only network is a record that holds a network's own configuration
(IPAM config, enable_ipv6, driver options, labels) for other networks to use,
typically one per host with that host's macvlan `parent` and subnet. It has
driver "null" and no host, allocates no pool and takes no endpoint. A network
created with `config_from` takes all of that from it (and must give none of
it itself); the config-only network cannot be deleted while one does. As in
libnetwork, config networks are found by name only, never by id.

Pure checks here; the transactional parts are in `networks.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from controller_service.models import IpamSpec, Network, NetworkSpec, Scope, State
from services.errors import FailedPrecondition, InvalidArgument, NotFound

# libnetwork records config-only networks with this driver, whatever was asked.
CONFIG_ONLY_DRIVER = "null"


def check_spec(spec: NetworkSpec, *, default_ipam_driver: str) -> None:
    """Docker's rules for the two flags, checked before anything is allocated."""
    if spec.config_only:
        if spec.config_from:
            raise InvalidArgument(
                "a configuration network cannot depend on another configuration network",
                reason="CONFIG_ONLY_FIELD",
            )
        if spec.internal or spec.host:
            raise InvalidArgument(
                "configuration network can only contain network specific fields. "
                "Network operator fields like [ internal | host ] are not supported.",
                reason="CONFIG_ONLY_FIELD",
            )
    if spec.config_from:
        ipam = spec.ipam
        if (
            ipam.configs
            or ipam.options
            or ipam.driver not in ("", default_ipam_driver)
            or spec.enable_ipv6
            or spec.labels
        ):
            raise InvalidArgument(
                "user specified configurations are not supported if the network "
                "depends on a configuration network",
                reason="CONFIG_FROM_FIELD",
            )
        if spec.options:
            raise InvalidArgument(
                "network driver options are not supported if the network depends "
                "on a configuration network",
                reason="CONFIG_FROM_FIELD",
            )


def not_found(name: str) -> NotFound:
    return NotFound(
        f"configuration network {name!r} does not exist",
        reason="CONFIG_NETWORK_NOT_FOUND",
        metadata={"config_from": name},
    )


def usable_source(net: Network | None, name: str) -> Network:
    """`net` (found by `name`) when it is a ready config-only network."""
    if net is None or not net.config_only or net.state is not State.READY:
        raise not_found(name)
    return net


def apply(source: Network, spec: NetworkSpec) -> NetworkSpec:
    """`spec` with the network-specific configuration of `source` (libnetwork's
    applyConfigurationTo); `spec` itself gave none (check_spec)."""
    return dataclasses.replace(
        spec,
        ipam=IpamSpec(
            driver=source.ipam.driver,
            options=dict(source.ipam.options),
            configs=source.ipam.configs,
        ),
        enable_ipv6=source.enable_ipv6,
        options=dict(source.options),
        labels=dict(source.labels),
    )


def record(spec: NetworkSpec, net_id: str, now: float) -> Network:
    """The config-only network's record, ready at once: nothing to allocate or plumb."""
    return Network(
        id=net_id,
        name=spec.name,
        driver=CONFIG_ONLY_DRIVER,
        scope=Scope.LOCAL,
        ipam=spec.ipam,
        enable_ipv6=spec.enable_ipv6,
        options=spec.options,
        labels=spec.labels,
        created=now,
        state=State.READY,
        config_only=True,
    )


def dependents(source: Network, nets: Iterable[Network]) -> list[Network]:
    return [n for n in nets if n.config_from == source.name and n.id != source.id]


def check_unused(source: Network, nets: Iterable[Network]) -> None:
    users = dependents(source, nets)
    if users:
        raise FailedPrecondition(
            f"configuration network {source.name!r} is in use "
            f"(by {', '.join(sorted(n.name for n in users))})",
            reason="CONFIG_NETWORK_IN_USE",
            metadata={"network": source.name},
        )


def check_takes_endpoints(net: Network) -> None:
    if net.config_only:
        raise FailedPrecondition(
            f"cannot create endpoint on configuration-only network {net.name!r}",
            reason="CONFIG_ONLY_NETWORK",
        )
