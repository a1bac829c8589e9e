"""`cnm-ipam`: serves cnm.ipam.v1.Ipam and cnm.ipam.v1.IdAllocator over Redis."""

from __future__ import annotations

from collections.abc import Sequence

from cnm.ipam.v1 import ipam_pb2_grpc
from services import metrics
from services.plugins import Discovery
from services.server import ServiceSpec
from services.service_main import common_parser, run
from services.store import Store

from .config import IpamConfig
from .idranges import IdRanges
from .pools import Pools
from .remote import RemotePools
from .remote_plugins import IpamPlugins
from .servicer import IdAllocatorServicer, IpamServicer


def build(cfg: IpamConfig, store: Store) -> list[ServiceSpec]:
    remote = RemotePools(store, IpamPlugins(Discovery(cfg.plugin_dirs)))
    pools = Pools(store, cfg.address_spaces)
    metrics.register_state(
        "cnm_ipam_pool_addresses",
        f"Addresses of each local pool (the first {METRIC_POOLS}), by state: used or free",
        ["pool", "state"],
        lambda: _pool_usage(pools),
    )
    return [
        ServiceSpec(
            "cnm.ipam.v1.Ipam",
            ipam_pb2_grpc.add_IpamServicer_to_server,
            IpamServicer(pools, remote),
        ),
        ServiceSpec(
            "cnm.ipam.v1.IdAllocator",
            ipam_pb2_grpc.add_IdAllocatorServicer_to_server,
            IdAllocatorServicer(IdRanges(store)),
        ),
    ]


METRIC_POOLS = 1000


def _pool_usage(pools: Pools) -> list[tuple[tuple[str, str], int]]:
    listed, _more = pools.list_pools("", METRIC_POOLS, "")
    samples = []
    for info in listed:
        samples += [
            ((str(info.pool_id), "used"), info.used),
            ((str(info.pool_id), "free"), info.free),
        ]
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_parser("cnm-ipam", "IPAM: address pools, addresses and id ranges over Redis.")
    parser.add_argument(
        "--plugin-dirs", metavar="DIRS", help="remote IPAM plugin directories, comma-separated"
    )
    parser.add_argument(
        "--address-spaces",
        metavar="NAMES",
        help="address spaces besides LocalDefault and GlobalDefault, comma-separated",
    )
    return run(
        prog="cnm-ipam",
        section="ipam",
        schema=IpamConfig,
        parser=parser,
        build=build,
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
