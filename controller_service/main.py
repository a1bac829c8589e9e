"""cnm-controller: the public CNM API service."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from cnm.controller.v1 import controller_pb2_grpc
from controller_service import overlay
from controller_service.config import ControllerConfig
from controller_service.controller import Controller, redis_context
from controller_service.servicer import ControllerServicer
from services import metrics
from services.address import parse_address
from services.config import ConfigError
from services.periodic import Periodic
from services.server import ServiceSpec
from services.service_main import common_parser, run
from services.store import Store

log = logging.getLogger(__name__)

SERVICE_NAME = "cnm.controller.v1.Controller"


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_parser(
        "cnm-controller",
        "The CNM controller: networks, endpoints, sandboxes, join/leave, hosts, events.",
    )
    parser.add_argument("--ipam", metavar="ADDR", help="the IPAM service's address")
    parser.add_argument(
        "--builtin-networks",
        action="store_const",
        const=True,
        default=None,
        help="make Docker's built-in host and none networks at start",
    )
    parser.add_argument(
        "--client-tls-cert", metavar="FILE", help="certificate shown to IPAM and drivers on TCP"
    )
    parser.add_argument("--client-tls-key", metavar="FILE")
    parser.add_argument(
        "--client-tls-ca", metavar="FILE", help="CA of IPAM's and drivers' server certificates"
    )
    running: list[Controller] = []
    loops: list[Periodic] = []

    def build(cfg: ControllerConfig, store: Store) -> list[ServiceSpec]:
        try:
            parse_address(cfg.ipam)
        except ValueError as e:
            raise ConfigError(f"ipam address {cfg.ipam!r}: {e}") from None
        if cfg.driver_timeout <= 0 or cfg.reconcile_interval <= 0 or cfg.instance_ttl <= 0:
            raise ConfigError("driver_timeout, reconcile_interval and instance_ttl must be > 0")
        try:
            overlay.parse_range(cfg.overlay_vni_range)
        except ValueError as e:
            raise ConfigError(f"overlay_vni_range: {e}") from None
        controller = Controller(redis_context(cfg, store))
        if cfg.builtin_networks:
            # In the background, retried: Redis may be down right now (a restart
            # of the controller must not fail on it).
            builtins = Periodic(
                "builtin-networks",
                lambda: _ensure_builtin(controller, builtins),
                1.0,
                max_backoff=10.0,
                run_first=True,
            )
            builtins.start()
            loops.append(builtins)
        controller.reconciler.start()
        running.append(controller)
        repo = controller.ctx.repo
        metrics.register_state(
            "cnm_network_endpoints",
            "Endpoints of each network",
            ["network", "driver"],
            lambda: [((n.name, n.driver), count) for n, count in repo.endpoint_counts()],
        )
        log.info("controller instance %s, IPAM at %s", controller.ctx.instance, cfg.ipam)
        return [
            ServiceSpec(
                SERVICE_NAME,
                controller_pb2_grpc.add_ControllerServicer_to_server,
                ControllerServicer(controller),
            )
        ]

    def on_stop() -> None:
        for loop in loops:
            loop.stop()
        for controller in running:
            controller.close()

    return run(
        prog="cnm-controller",
        section="controller",
        schema=ControllerConfig,
        parser=parser,
        build=build,
        argv=argv,
        on_stop=on_stop,
    )


if __name__ == "__main__":
    raise SystemExit(main())


def _ensure_builtin(controller: Controller, loop: Periodic) -> None:
    controller.networks.ensure_builtin()
    loop.stop()  # made (or found): nothing more to do
