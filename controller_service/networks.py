"""Networks: create (intent, IPAM pools and gateways, the VNI of an overlay,
driver), get with IPAM status, list, delete, prune; and what the reconciler
needs to finish them."""

from __future__ import annotations

import builtins
import dataclasses
import ipaddress
import logging

from controller_service import builtin, config_networks, listing, overlay, validate
from controller_service.builtin import is_builtin
from controller_service.context import Context, describe
from controller_service.events import EventType
from controller_service.ipam_client import GATEWAY_OPTIONS
from controller_service.models import (
    IpamConfig,
    Network,
    NetworkFilter,
    NetworkSpec,
    Page,
    PoolAllocation,
    Scope,
    State,
    SubnetStatus,
)
from controller_service.repository import Tx
from controller_service.rollback import Undo, crash_point
from services.errors import (
    AlreadyExists,
    CnmError,
    FailedPrecondition,
    InvalidArgument,
    MultiError,
)
from services.ids import new_id

log = logging.getLogger(__name__)

# Drivers whose networks carry no addresses unless subnets are asked for.
_ADDRESSLESS_DRIVERS = ("null", "host")


def _event_attrs(net: Network) -> dict[str, str]:
    return {"driver": net.driver, "scope": net.scope.value, "host": net.host}


class Networks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.vnis = overlay.Vnis(ctx.ipam, ctx.cfg.overlay_vni_range, ctx.repo.network_using_vni)

    # ------------------------------------------------------------------ create

    def create(self, spec: NetworkSpec, net_id: str) -> Network:
        ctx = self.ctx
        spec = validate.network_spec(spec)
        config_networks.check_spec(spec, default_ipam_driver=validate.IPAM_DEFAULT)
        builtin.check_create(spec, self.ctx.repo.all_networks())
        if spec.config_only:
            return self._create_config_only(spec, net_id)
        if spec.config_from:
            source = config_networks.usable_source(
                self._by_name(spec.config_from), spec.config_from
            )
            spec = validate.network_spec(config_networks.apply(source, spec))
        vni_wanted = None
        if spec.driver == overlay.DRIVER_OVERLAY:
            vni_wanted = overlay.check_options(spec.options)
            # The key is recorded only once the VNI is ours: a rollback releases
            # what the record names, never a VNI another network holds.
            options = {k: v for k, v in spec.options.items() if k != overlay.VXLANID_LIST}
            spec = dataclasses.replace(spec, options=options)
        scope = ctx.hosts.driver_scope(spec.driver)
        if spec.scope is not None and spec.scope is not scope:
            raise InvalidArgument(
                f"driver {spec.driver!r} has {scope.value} scope: --scope {spec.scope.value} "
                "is not supported (cnm's drivers keep their scope)",
                reason="INVALID_SCOPE",
                field="scope",
            )
        if scope is Scope.LOCAL:
            host = ctx.probe(ctx.hosts.choose(spec.host, driver=spec.driver)).id
        elif spec.host:
            raise InvalidArgument(
                f"driver {spec.driver!r} has global scope: `host` is only for local-scope drivers",
                reason="HOST_NOT_ALLOWED",
            )
        else:
            host = ""
        now = ctx.now()
        net = Network(
            id=net_id,
            name=spec.name,
            driver=spec.driver,
            scope=scope,
            ipam=spec.ipam,
            internal=spec.internal,
            enable_ipv6=spec.enable_ipv6,
            options=spec.options,
            labels=spec.labels,
            created=now,
            host=host,
            state=State.CREATING,
            config_from=spec.config_from,
            attachable=spec.attachable,
            **ctx.intent(),
        )
        with Undo() as undo:
            net = self._write_intent(net)
            undo.step("forget network", self._forget_or_orphan, net, undo)
            pools = self._allocate_pools(net, undo)
            options = dict(net.options)
            if net.driver == overlay.DRIVER_OVERLAY:
                vni = self.vnis.allocate(net.id, net.name, vni_wanted)
                undo.step(f"release VNI {vni}", self.vnis.release, vni)
                options[overlay.VXLANID_LIST] = str(vni)
            crash_point("network_after_ipam")
            net = ctx.transition(net, pools=pools, options=options)
            if host:
                undo.step("driver DeleteNetwork", ctx.driver_any_state(host).delete_network, net.id)
                self.ensure_on_host(net, host)
            net = ctx.transition(
                net,
                lambda tx, n: tx.event(EventType.NETWORK_CREATED, n.id, n.name, _event_attrs(n)),
                state=State.READY,
                **ctx.settled(),
            )
            undo.commit()
        log.info("created network %s (%s)", net.name, net.id)
        return net

    def _write_intent(self, net: Network) -> Network:
        def fn(tx: Tx) -> Network:
            taken = tx.network_id_by_name(net.name)
            if taken:
                raise AlreadyExists(
                    f"network name {net.name!r} is already taken (by {taken})",
                    reason="NETWORK_NAME_TAKEN",
                )
            if net.config_from:
                # Watched: a concurrent delete of the config network retries this.
                source_id = tx.network_id_by_name(net.config_from)
                source = tx.network(source_id) if source_id else None
                config_networks.usable_source(source, net.config_from)
            tx.begin()
            tx.put(net)
            return net

        return self.ctx.repo.tx(fn)

    def ensure_builtin(self) -> None:
        """The `host` and `none` networks, made once (a replica racing us, or a
        network of that name made before they were turned on, is left alone)."""
        for name in builtin.BUILTIN_NETWORKS:
            if self.ctx.repo.network_id_by_name(name):
                continue
            net = builtin.record(name, new_id(), self.ctx.now())

            def fn(tx: Tx, net: Network = net) -> bool:
                if tx.network_id_by_name(net.name):
                    return False
                tx.begin()
                tx.put(net)
                tx.event(EventType.NETWORK_CREATED, net.id, net.name, _event_attrs(net))
                return True

            if self.ctx.repo.tx(fn):
                log.info("created built-in network %s (%s)", net.name, net.id)

    def _by_name(self, name: str) -> Network | None:
        net_id = self.ctx.repo.network_id_by_name(name)
        return self.ctx.repo.network(net_id) if net_id else None

    def _create_config_only(self, spec: NetworkSpec, net_id: str) -> Network:
        """A record and its event, nothing else: no pool, no host, no driver."""
        net = config_networks.record(spec, net_id, self.ctx.now())

        def fn(tx: Tx) -> Network:
            taken = tx.network_id_by_name(net.name)
            if taken:
                raise AlreadyExists(
                    f"network name {net.name!r} is already taken (by {taken})",
                    reason="NETWORK_NAME_TAKEN",
                )
            tx.begin()
            tx.put(net)
            tx.event(EventType.NETWORK_CREATED, net.id, net.name, _event_attrs(net))
            return net

        net = self.ctx.repo.tx(fn)
        log.info("created configuration network %s (%s)", net.name, net.id)
        return net

    def _forget_or_orphan(self, net: Network, undo: Undo) -> None:
        # Earlier rollback steps failed: keep the intent for the reconciler.
        if not undo.failures:
            try:
                # A timed-out RequestPool may have happened all the same.
                for pool_id in self.ctx.ipam.pools_owned_by(net.id):
                    self.ctx.ipam.release_pool(pool_id)
            except CnmError as e:
                undo.failures.append(e)
        if undo.failures:
            self.ctx.orphan(net)
            return
        self._remove(net, event=False)

    def _configs(self, net: Network) -> list[tuple[IpamConfig, bool]]:
        """(config, v6) per pool to request; predefined pools where none given."""
        if net.ipam.driver == validate.IPAM_NULL:
            return []
        configs = [
            (c, ipaddress.ip_network(c.subnet).version == 6 if c.subnet else False)
            for c in net.ipam.configs
        ]
        if not configs:
            if net.driver in _ADDRESSLESS_DRIVERS:
                return []
            configs.append((IpamConfig(), False))
        if net.enable_ipv6 and not any(v6 for _c, v6 in configs):
            configs.append((IpamConfig(), True))
        return configs

    def _allocate_pools(self, net: Network, undo: Undo) -> tuple[PoolAllocation, ...]:
        ipam = self.ctx.ipam
        space = self.ctx.address_space(net.scope)
        pools = []
        for index, (cfg, v6) in enumerate(self._configs(net)):
            pool_id, subnet = ipam.request_pool(
                space=space,
                pool=cfg.subnet,
                sub_pool=cfg.ip_range,
                options=dict(net.ipam.options),
                v6=v6,
                owner=net.id,
                # Deterministic: a retried request cannot take a second pool.
                request_id=f"{net.id}:{index}",
                driver="" if net.ipam.driver == validate.IPAM_DEFAULT else net.ipam.driver,
            )
            undo.step(f"release pool {pool_id}", ipam.release_pool, pool_id)
            gateway = ipam.request_address(
                pool_id, cfg.gateway, owner=f"gateway:{net.id}", options=GATEWAY_OPTIONS
            )
            aux = {
                name: ipam.request_address(pool_id, addr, owner=f"aux:{name}")
                for name, addr in cfg.aux_addresses.items()
            }
            pools.append(
                PoolAllocation(
                    pool_id=pool_id,
                    subnet=subnet,
                    v6=v6,
                    ip_range=cfg.ip_range,
                    gateway=gateway,
                    aux_addresses=aux,
                )
            )
        return tuple(pools)

    # ------------------------------------------------------------------ read

    def get(self, text: str) -> tuple[Network, list[SubnetStatus], set[str]]:
        net = self.ctx.network(text)
        subnets = []
        for pool in net.pools:
            used, free = self.ctx.ipam.usage(pool.pool_id)
            subnets.append(
                SubnetStatus(subnet=pool.subnet, ips_in_use=used, dynamic_ips_available=free)
            )
        return net, subnets, self.ctx.repo.network_endpoint_ids(net.id)

    def list(self, flt: NetworkFilter, page_size: int, token: str) -> Page[Network]:
        flt = listing.validate_filter(flt)
        repo = self.ctx.repo
        nets = [
            n
            for n in repo.all_networks()
            if listing.network_matches(
                n, flt, len(repo.network_endpoint_ids(n.id)) if flt.dangling is not None else 0
            )
        ]
        return listing.paginate(nets, listing.network_key, page_size, token)

    def endpoint_ids(self, net: Network) -> set[str]:
        return self.ctx.repo.network_endpoint_ids(net.id)

    # ------------------------------------------------------------------ delete

    def _hosts_of(self, net: Network) -> builtins.list[str]:
        hosts = set(self.ctx.repo.network_hosts(net.id))
        if net.host:
            hosts.add(net.host)
        return sorted(hosts)

    def delete(self, text: str) -> Network:
        ctx = self.ctx
        net = ctx.network(text)
        builtin.check_delete(net)
        if net.state is State.CREATING:
            raise FailedPrecondition(
                f"{describe(net)} is still being created", reason="IN_PROGRESS"
            )
        self._check_no_endpoints(net, ctx.repo.network_endpoint_ids(net.id))
        for host in self._hosts_of(net):
            ctx.reachable(host)  # UNAVAILABLE before anything changes

        def fn(tx: Tx) -> Network:
            current = tx.network(net.id)
            if current is None or current.state is State.CREATING:
                raise FailedPrecondition(f"{describe(net)} changed concurrently; retry")
            self._check_no_endpoints(current, tx.network_endpoint_ids(net.id))
            if current.config_only:
                # Watched first: a network created meanwhile (the index changes) retries this.
                config_networks.check_unused(current, tx.all_networks())
            new = dataclasses.replace(current, state=State.DELETING, **ctx.intent())
            tx.begin()
            tx.put(new)
            return new

        net = ctx.repo.tx(fn)
        self.finish_delete(net)
        log.info("deleted network %s (%s)", net.name, net.id)
        return net

    def _check_no_endpoints(self, net: Network, ep_ids: set[str]) -> None:
        if not ep_ids:
            return
        eps = sorted(self.ctx.repo.endpoints(ep_ids), key=lambda e: (e.name, e.id))
        names = ", ".join(f"{e.name} ({e.id[:12]})" for e in eps) or ", ".join(sorted(ep_ids))
        raise FailedPrecondition(
            f"{describe(net)} has active endpoints: {names}",
            reason="NETWORK_HAS_ENDPOINTS",
            metadata={"endpoints": ",".join(sorted(ep_ids))},
        )

    def finish_delete(self, net: Network, *, thorough: bool = False) -> None:
        """Driver state removed on every host, pools released, record gone.
        On failure the intent is left to the reconciler and the error raised."""
        ctx = self.ctx
        errors: builtins.list[Exception] = []
        for host in self._hosts_of(net):
            try:
                ctx.driver_any_state(host).delete_network(net.id)
            except CnmError as e:
                errors.append(e)
        if not errors:
            pool_ids = [p.pool_id for p in net.pools]
            if thorough:
                pool_ids += ctx.ipam.pools_owned_by(net.id)
            for pool_id in dict.fromkeys(pool_ids):
                try:
                    ctx.ipam.release_pool(pool_id)
                except CnmError as e:
                    errors.append(e)
            vni = (
                overlay.recorded_vni(net.options) if net.driver == overlay.DRIVER_OVERLAY else None
            )
            if vni is not None:
                try:
                    self.vnis.release(vni)
                except CnmError as e:
                    errors.append(e)
        if errors:
            ctx.orphan(net)
            raise errors[0] if len(errors) == 1 else MultiError(errors)
        self._remove(net, event=net.state is State.DELETING)

    def rollback_create(self, net: Network) -> None:
        """Undoes a creation whose controller died: what it may have done is
        found from the record and from IPAM's owner field."""
        self.finish_delete(net, thorough=True)

    def _remove(self, net: Network, *, event: bool) -> None:
        def fn(tx: Tx) -> None:
            current = tx.network(net.id)
            if current is None:
                return
            tx.begin()
            tx.remove(current)
            tx.drop_network_indexes(net.id)
            if event:
                tx.event(EventType.NETWORK_DELETED, net.id, net.name, _event_attrs(net))

        self.ctx.repo.tx(fn)

    def prune(self, labels: tuple[str, ...] = (), until: float | None = None) -> builtins.list[str]:
        """Deletes networks without endpoints that carry every label of `labels`
        and were created before `until`; built-in networks are never pruned."""
        listing.validate_labels(labels, "labels")
        deleted = []
        for net in self.ctx.repo.all_networks():
            if net.state is not State.READY or is_builtin(net):
                continue
            if not all(listing.label_matches(net.labels, v) for v in labels):
                continue
            if until is not None and net.created >= until:
                continue
            if self.ctx.repo.network_endpoint_ids(net.id):
                continue
            try:
                self.delete(net.id)
                deleted.append(net.id)
            except CnmError as e:
                log.info("prune: skipped %s: %s", describe(net), e)
        return deleted

    # ------------------------------------------------------------------ global scope

    def ensure_on_host(self, net: Network, host: str) -> None:
        """Global scope: the driver creates the network on `host` before its
        first endpoint there (idempotent on the driver side)."""
        ctx = self.ctx
        if ctx.repo.network_ready_on(net.id, host):
            return
        # Recorded before the call, so a delete after a crash reaches this host too.
        ctx.repo.mark_network_host(net.id, host, ready=False)
        ctx.driver(host).create_network(net, ctx.address_space(net.scope))
        ctx.repo.mark_network_host(net.id, host, ready=True)
