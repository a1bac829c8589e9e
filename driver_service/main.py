"""`cnm-driver`: the per-host driver service (and `cnm-driver --cleanup`).

    cnm-driver --listen ADDR --redis-url URL --host-id ID [--advertise-addr IP]
               [--state-dir DIR] [--netns-prefix P] [--heartbeat-interval S] [--host-ttl S]
    cnm-driver --cleanup [--redis-url URL --host-id ID ...]

Serving: the store's records are loaded and the kernel reconciled with them
before any call is accepted (health is NOT_SERVING until then, and again
whenever Redis does not answer); then the host registers itself and
heartbeats, and the firewall watches for rules removed behind its back.

--cleanup removes everything cnm made on this host (links it marked,
its nftables tables, its namespaces, sandbox files, this host's records)
and exits: 0 when all of it went, 1 otherwise (each failure logged).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cnm.driver.v1 import driver_pb2_grpc
from driver_service import osl
from driver_service.config import DriverConfig, finish
from driver_service.conntrack import ConntrackFlusher
from driver_service.drivers.bridge.driver import BridgeDriver
from driver_service.drivers.bridge.fw import BridgeFirewall
from driver_service.drivers.host import HostDriver
from driver_service.drivers.macvlan import MacvlanDriver
from driver_service.drivers.null import NullDriver
from driver_service.drivers.overlay import OverlayDriver
from driver_service.drivers.remote import PluginLoader
from driver_service.firewall import Firewall
from driver_service.hostreg import HostRegistration
from driver_service.manager import Manager
from driver_service.ports import PortAllocator
from driver_service.reconcile import Reconciler, cleanup_host
from driver_service.registry import Registry
from driver_service.repair import LinkRepair
from driver_service.sandbox import Sandboxes
from driver_service.servicer import DriverServicer, Gate
from driver_service.state import State
from driver_service.store_recovery import StoreRecovery
from services import metrics
from services.address import parse_address
from services.config import ConfigError, load
from services.epoch import StoreEpoch
from services.errors import CnmError
from services.logsetup import setup_logging
from services.periodic import Periodic
from services.plugins import Discovery
from services.private_files import private_dir
from services.server import ServiceSpec
from services.service_main import common_parser, flags_of, run
from services.store import Store

log = logging.getLogger(__name__)

PROG = "cnm-driver"
SERVICE_NAME = "cnm.driver.v1.Driver"
# How often the firewall checks that its tables are still in the kernel.
FIREWALL_WATCH_INTERVAL = 1.0


def parser() -> argparse.ArgumentParser:
    p = common_parser(
        PROG, "The per-host driver service: sandboxes, bridge/null/host/overlay/macvlan drivers."
    )
    p.add_argument("--host-id", metavar="ID", help="this host's id (default: the hostname)")
    p.add_argument("--advertise-addr", metavar="IP", help="underlay address other hosts reach")
    p.add_argument("--state-dir", metavar="DIR", help="sandbox files (default /var/lib/cnm/driver)")
    p.add_argument("--netns-prefix", metavar="P", help="prefix of the namespaces cnm creates")
    p.add_argument("--heartbeat-interval", metavar="S", type=float)
    p.add_argument("--host-ttl", metavar="S", type=float)
    p.add_argument("--plugin-dirs", metavar="DIRS", help="plugin directories, comma-separated")
    p.add_argument("--remote-drivers", metavar="NAMES", help="plugin names, comma-separated")
    p.add_argument(
        "--sandbox-key-dirs",
        metavar="DIRS",
        help="directories of runtimes' namespaces a sandbox may adopt, comma-separated",
    )
    p.add_argument("--overlay-resync-interval", metavar="S", type=float)
    p.add_argument(
        "--cleanup",
        action="store_const",
        const=True,
        default=None,
        help="remove everything cnm made on this host, then exit",
    )
    return p


def registered_address(cfg: DriverConfig) -> str:
    """The address other processes dial: a TCP wildcard listener is reached on
    the advertise address (or stays as given when there is none)."""
    addr = parse_address(cfg.listen)
    host, _, port = addr.target.rpartition(":")
    if addr.kind == "tcp" and cfg.advertise_addr and host.strip("[]") in ("0.0.0.0", "::", ""):
        ip = cfg.advertise_addr
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return cfg.listen


class DriverApp:
    """The objects of one running service, shared by build, readiness and stop."""

    def __init__(self) -> None:
        self.gate = Gate()
        self.manager: Manager | None = None
        self.firewall: BridgeFirewall | None = None
        self.conntrack = ConntrackFlusher()
        self.hostreg: HostRegistration | None = None
        self.plugins: PluginLoader | None = None
        self.overlay: OverlayDriver | None = None
        self.recovery: StoreRecovery | None = None
        self.recovery_loop: Periodic | None = None
        self.repair: LinkRepair | None = None
        self.reconciled = False
        self.cfg: DriverConfig | None = None

    def build(self, cfg: DriverConfig, store: Store) -> list[ServiceSpec]:
        cfg = finish(cfg)
        self.cfg = cfg
        try:
            # 0700: the sandboxes' files are for the runtime to mount, not for every user.
            private_dir(Path(cfg.state_dir), marks=("sandboxes",))
        except OSError as e:
            raise ConfigError(f"state_dir {cfg.state_dir}: cannot create: {e.strerror}") from None
        self.firewall = Firewall()
        ports = PortAllocator(store, cfg.host_id)
        metrics.register_state(
            "cnm_driver_published_ports",
            "Host ports this host publishes, by protocol",
            ["protocol"],
            lambda: [((proto,), n) for proto, n in sorted(ports.published().items())],
        )
        state = State(store, cfg.host_id)
        self.overlay = OverlayDriver(
            store,
            host_id=cfg.host_id,
            advertise_addr=cfg.advertise_addr,
            netns_prefix=cfg.netns_prefix,
            sandbox_of=state.sandbox,
            endpoints_of=state.endpoints_of_network,
            settling=lambda: self.recovery is not None and self.recovery.settling(),
            settle=cfg.host_ttl,
            tick=cfg.heartbeat_interval,
            resync_interval=cfg.overlay_resync_interval,
        )
        self.recovery = StoreRecovery(
            StoreEpoch(store), state, ports, self.overlay, settle=cfg.host_ttl
        )
        self.recovery_loop = Periodic(
            "cnm-store-recovery", self.recovery.check, cfg.heartbeat_interval
        )
        registry = Registry(
            [
                BridgeDriver(self.firewall, self.conntrack, ports),
                NullDriver(),
                HostDriver(),
                self.overlay,
                MacvlanDriver(host_id=cfg.host_id, netns_prefix=cfg.netns_prefix),
            ]
        )
        self.plugins = PluginLoader(
            Discovery(cfg.plugin_dirs),
            registry,
            names=cfg.remote_drivers,
            on_change=lambda: self._drivers_changed(registry),
        )
        self.plugins.load()
        sandboxes = Sandboxes(
            state,
            state_dir=cfg.state_dir,
            netns_prefix=cfg.netns_prefix,
            resolver=cfg.dns_resolver,
            key_dirs=cfg.sandbox_key_dirs,
        )
        self.manager = Manager(state, registry, sandboxes)
        self.repair = LinkRepair(self.manager)
        self.hostreg = HostRegistration(
            store,
            host_id=cfg.host_id,
            address=registered_address(cfg),
            advertise_address=cfg.advertise_addr,
            drivers=registry.capabilities(),
            interval=cfg.heartbeat_interval,
            ttl=cfg.host_ttl,
        )
        servicer = DriverServicer(self.manager, self.gate)
        return [ServiceSpec(SERVICE_NAME, driver_pb2_grpc.add_DriverServicer_to_server, servicer)]

    def readiness(self, cfg: DriverConfig, store: Store) -> Callable[[], bool]:
        def check() -> bool:
            if not store.ping():
                return False
            if not self.reconciled:
                assert self.manager is not None and self.cfg is not None
                try:
                    assert self.recovery is not None and self.recovery_loop is not None
                    # The store as this process first sees it: later changes mean a loss.
                    self.recovery.epoch.check()
                    Reconciler(self.manager, store, self.cfg.netns_prefix).run()
                    assert self.firewall is not None and self.hostreg is not None
                    self.firewall.start_watcher(FIREWALL_WATCH_INTERVAL)
                    assert self.overlay is not None
                    self.overlay.start()
                    self.hostreg.register()
                    self.hostreg.start()
                    assert self.plugins is not None
                    self.plugins.start(self.cfg.heartbeat_interval)
                    self.recovery_loop.start()
                    assert self.repair is not None
                    self.repair.start()
                except CnmError as e:
                    log.error("start-up reconciliation failed (will retry): %s", e)
                    return False
                self.reconciled = True
                self.gate.open()
            return True

        return check

    def _drivers_changed(self, registry: Registry) -> None:
        """A plugin was registered or failed after start-up: republish the list."""
        if self.hostreg is None:
            return
        self.hostreg.drivers = registry.capabilities()
        if self.reconciled:
            try:
                self.hostreg.register()
            except CnmError as e:
                log.warning("could not publish the new driver list (next heartbeat will): %s", e)

    def stop(self) -> None:
        if self.repair is not None:
            self.repair.stop()
        if self.plugins is not None:
            self.plugins.stop()
        if self.recovery_loop is not None:
            self.recovery_loop.stop()
        if self.hostreg is not None:
            self.hostreg.stop()
        if self.overlay is not None:
            self.overlay.stop()
        if self.firewall is not None:
            self.firewall.close()
        if self.manager is not None:
            self.manager.sandboxes.flush(5.0)
        # Let queued link deletions and conntrack flushes finish before exiting.
        osl.wait_for_background_deletes(5.0)
        self.conntrack.wait_idle(5.0)


def cleanup(argv: Sequence[str] | None) -> int:
    args = parser().parse_args(argv)
    flags = {k: v for k, v in flags_of(args).items() if k != "cleanup"}
    try:
        cfg = finish(load(DriverConfig, section="driver", file=args.config, flags=flags))
    except ConfigError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    setup_logging(PROG, cfg.log_level, cfg.log_format)
    store: Store | None = Store(cfg.redis_url, cfg.redis_prefix)
    assert store is not None
    if not store.ping():
        log.warning("redis at %s is unreachable: cleaning the kernel only", cfg.redis_url)
        store = None
    errors = cleanup_host(
        store=store,
        host_id=cfg.host_id,
        netns_prefix=cfg.netns_prefix,
        state_dir=cfg.state_dir,
        firewall=Firewall(),
    )
    for err in errors:
        log.error("cleanup: %s", err)
    log.info("cleanup of host %s done with %d errors", cfg.host_id, len(errors))
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if "--cleanup" in args_list:
        return cleanup(args_list)
    app = DriverApp()
    return run(
        prog=PROG,
        section="driver",
        schema=DriverConfig,
        parser=parser(),
        build=app.build,
        argv=args_list,
        on_stop=app.stop,
        readiness=app.readiness,
    )


if __name__ == "__main__":
    raise SystemExit(main())
